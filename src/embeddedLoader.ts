/**
 * The one way jobd reaches its embedded server. The module is imported only when mongoUri is
 * 'embedded' (most runs talk to a real MongoDB or to a daemon's server), so it is loaded lazily; its
 * types come from the module itself, never from a hand-copied interface.
 */
import type { EmbeddedServer, EmbeddedServerOptions } from './embedded/index.js';

export type { EmbeddedServer, EmbeddedServerOptions };

export async function startEmbeddedServer(opts: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const embedded = await import('./embedded/index.js');
  return embedded.startEmbeddedServer(opts);
}
