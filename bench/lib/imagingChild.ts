/**
 * One imaging kernel in a fresh process, so the benchmark can report its own wall time and peak RSS.
 *   convert INPUT OUTPUT CZ CY CX      motion MOVIE OUT_PREFIX PIXEL_SIZE BFACTOR THREADS
 * Motion correction runs from the build (dist/), as the daemon does: its worker threads then load
 * compiled JavaScript, not the TypeScript sources through tsx. BENCH_BUILD=<checkout> runs another
 * checkout's build (its dist/) instead of this one's.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { convertToOmeZarr } from '../../src/imaging/convert/convertToOmeZarr.js';

type MotionModule = typeof import('../../src/imaging/kernels/motion.js');

const [task, a, b, ...rest] = process.argv.slice(2);
const started = performance.now();
const cpuStart = process.cpuUsage();
let extra: Record<string, unknown>;
if (task === 'convert') {
  const chunks = rest.map(Number) as [number, number, number];
  const r = await convertToOmeZarr(a!, b!, { chunks, compression: 'blosc-lz4', overwrite: true });
  extra = {
    bytesRead: r.bytesRead,
    bytesWritten: r.bytesWritten,
    levels: r.levels.length,
    chunks: r.chunksWritten,
  };
} else if (task === 'motion') {
  const { correctMotion, writeMotionOutputs } = (await import(
    pathToFileURL(join(process.env.BENCH_BUILD ?? join(import.meta.dirname, '../..'), 'dist/imaging/kernels/motion.js'))
      .href
  )) as MotionModule;
  const r = await correctMotion(a!, {
    pixelSize: Number(rest[0]),
    bFactor: Number(rest[1]),
    threads: Number(rest[2] ?? 1),
  });
  await writeMotionOutputs(r, { sumMrc: `${b}_sum.mrc`, trajectoryJson: `${b}_shifts.json` });
  extra = { shifts: r.shifts, binning: r.binning, iterations: r.iterations, threads: r.threads };
} else {
  throw new Error(`unknown task ${task}`);
}
const seconds = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuStart);
const cpuSeconds = (cpu.user + cpu.system) / 1e6;
process.stdout.write(
  `${JSON.stringify({ seconds, cpuSeconds, maxRssMb: process.resourceUsage().maxRSS / 1024, ...extra })}\n`,
);
