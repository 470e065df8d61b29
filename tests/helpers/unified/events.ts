/**
 * Command monitoring for client entities (unified format: observeEvents, ignoreCommandMonitoringEvents,
 * observeSensitiveCommands) and the expectEvents assertions over what was observed.
 */
import type {
  CommandFailedEvent,
  CommandStartedEvent,
  CommandSucceededEvent,
  Document,
  MongoClient,
} from 'mongodb';
import { MatchError, matchValue, type EntityLookup } from './match.js';
import type { DbNames } from './dbNames.js';

export const COMMAND_EVENT_TYPES = ['commandStartedEvent', 'commandSucceededEvent', 'commandFailedEvent'];

/** Commands whose events are never observed unless the client asks for sensitive commands. */
const SENSITIVE = new Set([
  'authenticate',
  'saslstart',
  'saslcontinue',
  'getnonce',
  'createuser',
  'updateuser',
  'copydbgetnonce',
  'copydbsaslstart',
  'copydb',
]);
const HELLO = new Set(['hello', 'ismaster']);

export interface ObservedEvent {
  type: string;
  commandName: string;
  databaseName: string;
  command?: Document;
  reply?: Document;
  hasServiceId: boolean;
  hasServerConnectionId: boolean;
}

/** Records one client's command events while the case's operations run. */
export class EventRecorder {
  readonly events: ObservedEvent[] = [];
  private listening = true;
  private readonly observe: Set<string>;
  private readonly ignore: Set<string>;
  private readonly sensitive: boolean;

  constructor(client: MongoClient, spec: Document) {
    this.observe = new Set((spec.observeEvents as string[] | undefined) ?? []);
    this.ignore = new Set([...((spec.ignoreCommandMonitoringEvents as string[] | undefined) ?? [])]);
    this.ignore.add('configureFailPoint');
    this.sensitive = spec.observeSensitiveCommands === true;
    client.on('commandStarted', (e: CommandStartedEvent) =>
      this.record('commandStartedEvent', e, { command: e.command }),
    );
    client.on('commandSucceeded', (e: CommandSucceededEvent) =>
      this.record('commandSucceededEvent', e, { reply: e.reply as Document }),
    );
    client.on('commandFailed', (e: CommandFailedEvent) => this.record('commandFailedEvent', e, {}));
  }

  /** Events after this call are not recorded (the format's "disable those event listeners"). */
  stop(): void {
    this.listening = false;
  }

  private record(
    type: string,
    e: CommandStartedEvent | CommandSucceededEvent | CommandFailedEvent,
    body: { command?: Document; reply?: Document },
  ): void {
    if (!this.listening || !this.observe.has(type) || this.ignore.has(e.commandName)) return;
    if (!this.sensitive && isSensitive(e.commandName, body.command ?? body.reply)) return;
    this.events.push({
      type,
      commandName: e.commandName,
      databaseName: e.databaseName,
      ...body,
      hasServiceId: e.serviceId !== undefined,
      hasServerConnectionId: e.serverConnectionId !== undefined && e.serverConnectionId !== null,
    });
  }
}

/**
 * Sensitive per the command monitoring spec: authentication commands, and hello/isMaster when they
 * carry speculative authentication (the driver redacts those to an empty document).
 */
function isSensitive(commandName: string, body: Document | undefined): boolean {
  const name = commandName.toLowerCase();
  if (SENSITIVE.has(name)) return true;
  if (!HELLO.has(name)) return false;
  return !body || Object.keys(body).length === 0 || 'speculativeAuthenticate' in body;
}

export interface ExpectedEventsForClient {
  client: string;
  eventType?: string;
  events: Document[];
  ignoreExtraEvents?: boolean;
}

/**
 * Asserts one client's observed events against the expected list: same number (or at least as many
 * with ignoreExtraEvents), same order, each matching. Database names are compared as the case file
 * spells them.
 */
export function matchEvents(
  expected: ExpectedEventsForClient,
  actual: ObservedEvent[],
  names: DbNames,
  entities: EntityLookup,
): void {
  const label = `expectEvents[${expected.client}]`;
  const summary = (): string => actual.map((e) => `${e.type}:${e.commandName}`).join(', ') || 'none';
  if (expected.events.length > actual.length)
    throw new MatchError(
      `${label}: expected ${expected.events.length} event(s), observed ${actual.length} (${summary()})`,
    );
  if (!expected.ignoreExtraEvents && actual.length > expected.events.length)
    throw new MatchError(
      `${label}: expected ${expected.events.length} event(s), observed ${actual.length} (${summary()})`,
    );
  expected.events.forEach((wanted, i) =>
    matchEvent(wanted, actual[i] as ObservedEvent, `${label}[${i}]`, names, entities),
  );
}

/** Asserts that one observed event matches an expectedEvent document (its single key is the type). */
export function matchEvent(
  wanted: Document,
  got: ObservedEvent,
  at: string,
  names: DbNames,
  entities: EntityLookup,
): void {
  const [type, spec] = Object.entries(wanted)[0] as [string, Document];
  if (got.type !== type)
    throw new MatchError(`${at}: expected a ${type}, observed ${got.type} for ${got.commandName}`);
  for (const [key, value] of Object.entries(spec)) {
    const path = `${at}.${type}.${key}`;
    switch (key) {
      case 'command':
      case 'reply':
        matchValue(value, names.unmap(got[key]), path, { root: true, entities });
        break;
      case 'commandName':
        if (got.commandName !== value)
          throw new MatchError(`${path}: expected ${String(value)}, got ${got.commandName}`);
        break;
      case 'databaseName': {
        const db = names.unmapString(got.databaseName);
        if (db !== value) throw new MatchError(`${path}: expected ${String(value)}, got ${db}`);
        break;
      }
      case 'hasServiceId':
      case 'hasServerConnectionId':
        if (got[key] !== value) throw new MatchError(`${path}: expected ${String(value)}, got ${got[key]}`);
        break;
      default:
        throw new MatchError(`${path}: unsupported event assertion`);
    }
  }
}

/** How many of the observed events match `wanted`. */
export function countMatching(
  wanted: Document,
  actual: ObservedEvent[],
  names: DbNames,
  entities: EntityLookup,
): number {
  let n = 0;
  for (const got of actual) {
    try {
      matchEvent(wanted, got, '', names, entities);
      n++;
    } catch (err) {
      if (!(err instanceof MatchError)) throw err;
    }
  }
  return n;
}
