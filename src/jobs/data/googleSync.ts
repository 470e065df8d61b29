import { defineJobType } from '../defineJobType.js';
import { syncSchemas } from './syncTypes.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { runCore } from './typeKit.js';

/** Built-in job type `google_sync`: the legacy sync (user_email, input_dir, data_url) over rclone. */
export default defineJobType({
  name: 'google_sync',
  description:
    "Copies a remote (a Google Drive folder link, an rclone remote, file:///) into a data dir with rclone, with the user's credentials from the auth dir.",
  schemas: syncSchemas,
  defaults: DATA_TYPE_DEFAULTS.google_sync,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/remoteSync.js')).googleSyncParsed, input, ctx),
});
