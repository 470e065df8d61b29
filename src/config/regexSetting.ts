/**
 * A settings value that is a regular expression over a program's output lines: it must compile, and
 * its capture groups must be what the reader of the matches expects (`groupsProblem` says what is
 * wrong with a count, or nothing).
 */
import { z } from 'zod';

export function regexSetting(groupsProblem: (groups: number) => string | undefined) {
  return z.string({ error: 'must be a regular expression (text)' }).superRefine((v, ctx) => {
    let re: RegExp;
    try {
      re = new RegExp(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `must be a regular expression: ${(err as Error).message}` });
      return;
    }
    // A group count: match an empty alternative beside the pattern.
    const problem = groupsProblem(new RegExp(`${re.source}|`).exec('')!.length - 1);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}
