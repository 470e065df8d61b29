import { MongoServerError } from 'mongodb';

/** The server error `p` rejects with; fails the test when it succeeds or rejects with anything else. */
export async function serverError(p: Promise<unknown>): Promise<MongoServerError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof MongoServerError) return err;
    throw err;
  }
  throw new Error('expected a server error, the operation succeeded');
}
