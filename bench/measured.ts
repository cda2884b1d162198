/**
 * Runs a command as the benches measure a whole process: wall time, and peak resident memory from GNU time's
 * `-v` report (`Maximum resident set size`: the largest of the process and its waited-for children), when
 * /usr/bin/time exists; otherwise the peak is undefined.
 * @module
 */
import { exists } from "../engine/util/fs.ts";

/** What a measured run gives. */
export interface MeasuredRun {
  code: number;
  wallS: number;
  /** Peak RSS in MiB, when /usr/bin/time could report it. */
  peakRssMiB?: number;
  stdout: string;
  stderr: string;
}

const GNU_TIME = "/usr/bin/time";

/** Runs `cmd args` in `cwd`, capturing its output, with wall time and peak RSS. */
export async function runMeasured(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<MeasuredRun> {
  const timed = await exists(GNU_TIME);
  const report = timed ? await Deno.makeTempFile({ prefix: "whetstone-time-" }) : undefined;
  const argv = timed ? [GNU_TIME, "-v", "-o", report!, cmd, ...args] : [cmd, ...args];
  const t0 = performance.now();
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), cwd: opts.cwd, env: opts.env }).output();
  const wallS = (performance.now() - t0) / 1000;
  let peakRssMiB: number | undefined;
  if (report) {
    const text = await Deno.readTextFile(report);
    await Deno.remove(report);
    const m = text.match(/Maximum resident set size \(kbytes\): (\d+)/);
    if (m) peakRssMiB = Number(m[1]) / 1024;
  }
  const dec = new TextDecoder();
  return { code: out.code, wallS, peakRssMiB, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
