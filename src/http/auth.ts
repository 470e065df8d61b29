/**
 * Bearer tokens. Each presented token is hashed and compared with every configured token's hash in
 * constant time (no early exit), so neither a token's content nor its position leaks through timing.
 * Tokens never reach a log: only the role that matched is kept on the request.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TokenRole } from '../config/http.js';
import { HttpProblem } from './problem.js';

export type Need = 'none' | 'read' | 'worker' | 'admin';

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

export class TokenCheck {
  private readonly hashes: { hash: Buffer; role: TokenRole }[];

  constructor(
    tokens: readonly { token: string; role: TokenRole }[],
    private readonly authReads: boolean,
  ) {
    this.hashes = tokens.map((t) => ({ hash: sha256(t.token), role: t.role }));
  }

  /** The role of a presented token, or null when it matches none. */
  roleOf(presented: string): TokenRole | null {
    const h = sha256(presented);
    let role: TokenRole | null = null;
    for (const t of this.hashes) {
      if (timingSafeEqual(h, t.hash) && role !== 'admin') role = t.role;
    }
    return role;
  }

  /**
   * What a route needs: changing routes an admin token; the external worker routes a worker or admin
   * token; reads a token only with authReads.
   */
  needFor(kind: 'read' | 'change' | 'work' | 'open'): Need {
    if (kind === 'open') return 'none';
    if (kind === 'change') return 'admin';
    if (kind === 'work') return 'worker';
    return this.authReads ? 'read' : 'none';
  }

  /** A fastify onRequest hook: 401 without a token, 403 with one that is unknown or only reads. */
  hook(need: Need) {
    return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
      if (need === 'none') return;
      const header = req.headers.authorization;
      const m = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!m) {
        void reply.header('WWW-Authenticate', 'Bearer realm="jobd"');
        throw new HttpProblem(
          401,
          'Unauthorized',
          'this route needs an Authorization: Bearer <token> header',
        );
      }
      const role = this.roleOf(m[1]!);
      if (role === null)
        throw new HttpProblem(403, 'Forbidden', 'the bearer token is not one of http.tokens');
      if (need === 'admin' && role !== 'admin')
        throw new HttpProblem(
          403,
          'Forbidden',
          `this route changes jobs: it needs an admin token, not a ${role} token`,
        );
      if (need === 'worker' && role === 'read')
        throw new HttpProblem(
          403,
          'Forbidden',
          'this route pulls or settles jobs: it needs a worker or admin token, not a read token',
        );
    };
  }
}
