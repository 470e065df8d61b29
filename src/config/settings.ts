/**
 * The settings loader for code that runs a daemon itself: the same layers as jobd
 * (defaults < settings file < JOBD_* environment < overrides), validated with the same messages, frozen.
 *
 *   import { loadSettings, startDaemon } from 'jobd';
 *   const daemon = await startDaemon({ config: loadSettings({ file: 'settings.json' }) });
 */
import { loadConfig } from './load.js';
import type { ResolvedConfig } from './types.js';
import type { SettingsInput } from './validate.js';

/** What a settings file may hold; every key optional. */
export type JobdSettings = SettingsInput;

export interface LoadSettingsOptions {
  /** The settings file (JSON), relative to `cwd`. Without it: $JOBD_SETTINGS from `env`, else none. */
  file?: string;
  /** Where JOBD_* variables are read; process.env by default. Pass {} to ignore the environment. */
  env?: Record<string, string | undefined>;
  /** Settings in the file's shape, applied over the file and the environment. */
  overrides?: JobdSettings;
  /** Relative paths in `file`, the environment and `overrides` resolve against this; process.cwd() by default. */
  cwd?: string;
}

/** Load, validate and freeze jobd's settings; throws ConfigError naming each bad key, value and origin. */
export function loadSettings(options: LoadSettingsOptions = {}): ResolvedConfig {
  return loadConfig({
    ...(options.file !== undefined ? { settingsPath: options.file } : {}),
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.overrides !== undefined ? { overrides: options.overrides as Record<string, unknown> } : {}),
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
  });
}
