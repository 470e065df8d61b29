/**
 * runOnRequirements: which cases apply to the server under test. The server's version comes from
 * buildInfo.versionArray, its topology from hello (a server with a setName is a replica set member,
 * even when the driver reaches it with directConnection).
 */
import type { Db, Document } from 'mongodb';
import type { RunOnRequirement } from './types.js';
import { matchValue } from './match.js';

export type Topology = 'single' | 'replicaset' | 'sharded' | 'load-balanced';

export interface ServerInfo {
  version: [number, number, number];
  topology: Topology;
  /** Authentication is not configured by this test harness. */
  auth: boolean;
  /** Atlas Serverless is never the target of this harness. */
  serverless: boolean;
  admin: Db;
  parameters: Map<string, unknown>;
}

export async function describeServer(admin: Db): Promise<ServerInfo> {
  const buildInfo = await admin.command({ buildInfo: 1 });
  const hello = await admin.command({ hello: 1 });
  const parts = Array.isArray(buildInfo.versionArray)
    ? (buildInfo.versionArray as unknown[]).slice(0, 3).map(Number)
    : String(buildInfo.version).split(/[.-]/).slice(0, 3).map(Number);
  const version: [number, number, number] = [parts[0] ?? 0, parts[1] ?? 0, parts[2] ?? 0];
  let topology: Topology = 'single';
  if (hello.msg === 'isdbgrid') topology = 'sharded';
  else if (hello.setName) topology = 'replicaset';
  if (hello.serviceId) topology = 'load-balanced';
  return { version, topology, auth: false, serverless: false, admin, parameters: new Map() };
}

export function parseVersion(text: string): [number, number, number] {
  const parts = text.split('.').map((p) => Number.parseInt(p, 10));
  return [parts[0] || 0, parts[1] || 0, parts[2] || 0];
}

export function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Why a single requirement is not met, or undefined when it is. */
async function unmet(req: RunOnRequirement, server: ServerInfo): Promise<string | undefined> {
  const v = server.version.join('.');
  if (req.minServerVersion && compareVersions(server.version, parseVersion(req.minServerVersion)) < 0) {
    return `needs server >= ${req.minServerVersion} (server is ${v})`;
  }
  if (req.maxServerVersion && compareVersions(server.version, parseVersion(req.maxServerVersion)) > 0) {
    return `needs server <= ${req.maxServerVersion} (server is ${v})`;
  }
  if (req.topologies) {
    const ok = req.topologies.some(
      (t) => t === server.topology || (t === 'sharded-replicaset' && server.topology === 'sharded'),
    );
    if (!ok) return `needs topology ${req.topologies.join('|')} (server is ${server.topology})`;
  }
  if (req.serverless === 'require' && !server.serverless) return 'needs Atlas Serverless';
  if (req.serverless === 'forbid' && server.serverless) return 'not for Atlas Serverless';
  if (req.auth === true && !server.auth) return 'needs authentication enabled';
  if (req.auth === false && server.auth) return 'needs authentication disabled';
  if (req.authMechanism) return `needs auth mechanism ${req.authMechanism}`;
  if (req.csfle !== undefined && req.csfle !== false) return 'needs client-side field level encryption';
  if (req.serverParameters) {
    for (const [name, expected] of Object.entries(req.serverParameters as Document)) {
      const actual = await serverParameter(server, name);
      try {
        matchValue(expected, actual, name, { root: false });
      } catch {
        return `needs server parameter ${name} = ${JSON.stringify(expected)}`;
      }
    }
  }
  return undefined;
}

async function serverParameter(server: ServerInfo, name: string): Promise<unknown> {
  if (!server.parameters.has(name)) {
    let value: unknown;
    try {
      const reply = await server.admin.command({ getParameter: 1, [name]: 1 });
      value = reply[name];
    } catch {
      value = undefined;
    }
    server.parameters.set(name, value);
  }
  return server.parameters.get(name);
}

/** Undefined when any requirement is met (or none is given); otherwise the reasons, joined. */
export async function requirementsUnmet(
  reqs: RunOnRequirement[] | undefined,
  server: ServerInfo,
): Promise<string | undefined> {
  if (!reqs || reqs.length === 0) return undefined;
  const reasons: string[] = [];
  for (const req of reqs) {
    const reason = await unmet(req, server);
    if (reason === undefined) return undefined;
    reasons.push(reason);
  }
  return [...new Set(reasons)].join('; or ');
}
