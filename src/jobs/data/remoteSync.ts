import { defineJobType } from '../defineJobType.js';
import { syncSchemas } from './syncTypes.js';
import { DATA_TYPE_DEFAULTS } from './typeDefaults.js';
import { runCore } from './typeKit.js';

/** Built-in job type `remote_sync`: rclone copy or sync from a configured remote into a data dir. */
export default defineJobType({
  name: 'remote_sync',
  description: 'Copies or syncs a remote of the rclone config into a data dir with rclone.',
  schemas: syncSchemas,
  defaults: DATA_TYPE_DEFAULTS.remote_sync,
  // The core (and what it imports) loads when a job runs, not when jobctl reads the schemas.
  handler: async (input, ctx) => runCore((await import('./lib/remoteSync.js')).remoteSyncParsed, input, ctx),
});
