import type { Document } from 'bson';
import { CommandError } from './errors.js';
import type { CommandContext } from './commandContext.js';
export function openChangeStream(_ctx: CommandContext, _coll: string | null, _spec: unknown, _rest: Document[], _batchSize: number | undefined): Document {
  throw new CommandError('NotImplemented', 'change streams are not implemented yet');
}
