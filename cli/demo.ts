/**
 * `deno task demo`: trains the tiny byte-level model for a few dozen steps on the bundled demo
 * data (or a built-in text), one submit per step, printing the loss as it falls, then greedily
 * completes a prompt with the trained weights.
 * @module
 */
import { Graph } from "../engine/graph/mod.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { ReferenceExecutor } from "../engine/exec/reference.ts";
import type { Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { TINY, type TinyConfig, tinyForward, tinyInit, tinyTrainStep } from "../engine/nn/tiny.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";

const BUILTIN = `Whetstone fine-tunes open language models in TypeScript on Deno. A training step is traced into a
graph, differentiated, planned into one arena and replayed on the GPU with a single submit. `;

/** Loads demo text: the bundled demo dataset (`fixtures/demo/whetstone_demo.json`), else a built-in paragraph. */
export async function demoText(): Promise<{ text: string; source: string }> {
  const url = new URL("../fixtures/demo/whetstone_demo.json", import.meta.url);
  try {
    const rows = JSON.parse(await Deno.readTextFile(url)) as { instruction: string; input: string; output: string }[];
    const text = rows.map((r) => `${r.instruction}\n${r.input ? r.input + "\n" : ""}${r.output}\n\n`).join("");
    return { text, source: `fixtures/demo/whetstone_demo.json (${rows.length} rows)` };
  } catch {
    return { text: BUILTIN.repeat(40), source: "built-in text" };
  }
}

/** Learning rate at `step` (1-based): linear warmup then cosine decay to 10%. */
export function demoLr(step: number, total: number, peak: number, warmup: number): number {
  if (step <= warmup) return (peak * step) / warmup;
  const t = (step - warmup) / Math.max(1, total - warmup);
  return peak * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * t)));
}

/** Result of a demo run. */
export interface DemoResult {
  losses: number[];
  tokensPerSecond: number;
  sample: string;
  executor: string;
}

/** Runs the demo; `log` receives each line printed. */
export async function runDemo(
  opts: { steps?: number; executor?: Executor; cfg?: TinyConfig; log?: (s: string) => void; sample?: number } = {},
): Promise<DemoResult> {
  const log = opts.log ?? console.log;
  const cfg = opts.cfg ?? TINY;
  const steps = opts.steps ?? 120;
  const ex = opts.executor ?? ((await hasGpu()) ? await WebGpuExecutor.create() : new ReferenceExecutor());
  const { text, source } = await demoText();
  const bytes = new TextEncoder().encode(text);
  log(`executor ${ex.name}; data ${source}, ${bytes.length} bytes; model ${cfg.layers} layers × ${cfg.hidden} hidden`);
  for (const [name, p] of tinyInit(cfg, 1)) {
    ex.setParam(name, p.data, p.shape);
    ex.setParam(`${name}.exp_avg`, new Float32Array(p.data.length), p.shape);
    ex.setParam(`${name}.exp_avg_sq`, new Float32Array(p.data.length), p.shape);
  }
  const t0 = performance.now();
  const train = await ex.compile(
    tinyTrainStep(cfg, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }),
  );
  log(
    `planned the step in ${(performance.now() - t0).toFixed(0)} ms: ${
      (train.stats.arenaBytes / 1024).toFixed(0)
    } KiB arena`,
  );
  const r = rng(7);
  const n = cfg.batch * cfg.seq;
  const positions = Int32Array.from({ length: n }, (_, i) => i % cfg.seq);
  const losses: number[] = [];
  const start = performance.now();
  let inflight: Promise<void> | undefined;
  for (let s = 1; s <= steps; s++) {
    const ids = new Int32Array(n), labels = new Int32Array(n);
    for (let b = 0; b < cfg.batch; b++) {
      const at = Math.floor(r() * (bytes.length - cfg.seq - 1));
      for (let i = 0; i < cfg.seq; i++) {
        ids[b * cfg.seq + i] = bytes[at + i];
        labels[b * cfg.seq + i] = bytes[at + i + 1];
      }
    }
    const lr = demoLr(s, steps, 3e-3, 5);
    const pending = train.run({ ids, positions, labels, lr: [lr], step: [s] }, ["loss", "grad_norm"]);
    // Keep one step in flight: print step s-1 while step s runs.
    const prev = inflight;
    inflight = pending.then((o) => {
      losses.push(o.loss[0]);
      const tps = (s * n) / ((performance.now() - start) / 1000);
      log(
        `step ${String(s).padStart(3)}/${steps}  loss ${o.loss[0].toFixed(4)}  grad_norm ${
          o.grad_norm[0].toFixed(3)
        }  ` +
          `lr ${lr.toExponential(2)}  ${tps.toFixed(0)} tok/s`,
      );
    });
    if (prev) await prev;
  }
  await inflight;
  const secs = (performance.now() - start) / 1000;
  const tokensPerSecond = (steps * n) / secs;
  const head = losses.slice(0, 5).reduce((a, b) => a + b, 0) / Math.min(5, losses.length);
  const tail = losses.slice(-5).reduce((a, b) => a + b, 0) / Math.min(5, losses.length);
  log(`loss ${head.toFixed(3)} → ${tail.toFixed(3)} (mean of first and last 5 steps) in ${secs.toFixed(1)} s`);
  log(`loss curve ${sparkline(losses)}`);
  const sample = await greedy(ex, cfg, "Give three tips", opts.sample ?? 48);
  log(`sample: ${JSON.stringify(sample)}`);
  return { losses, tokensPerSecond, sample, executor: ex.name };
}

/** Greedy byte-level completion of `prompt` with the stored weights. */
async function greedy(ex: Executor, cfg: TinyConfig, prompt: string, count: number): Promise<string> {
  const c1 = { ...cfg, batch: 1 };
  const g = new Graph();
  const ids = g.input("ids", [1, c1.seq], "i32");
  const pos = g.input("positions", [1, c1.seq], "i32");
  g.output("logits", tinyForward(g, c1, ids, pos));
  const fwd = await ex.compile(g);
  const toks = [...new TextEncoder().encode(prompt)];
  const positions = Int32Array.from({ length: c1.seq }, (_, i) => i);
  for (let k = 0; k < count; k++) {
    const window = toks.slice(-c1.seq);
    const feed = new Int32Array(c1.seq);
    feed.set(window);
    const { logits } = await fwd.run({ ids: feed, positions }, ["logits"]);
    const row = logits.subarray((window.length - 1) * c1.vocab, window.length * c1.vocab);
    let best = 0;
    for (let v = 1; v < c1.vocab; v++) if (row[v] > row[best]) best = v;
    toks.push(best);
  }
  return new TextDecoder().decode(new Uint8Array(toks));
}

function sparkline(xs: number[]): string {
  const bars = "▁▂▃▄▅▆▇█";
  const lo = Math.min(...xs), hi = Math.max(...xs);
  const step = Math.max(1, Math.floor(xs.length / 60));
  let s = "";
  for (let i = 0; i < xs.length; i += step) s += bars[Math.round(((xs[i] - lo) / (hi - lo || 1)) * 7)];
  return `${s} (${hi.toFixed(2)} … ${lo.toFixed(2)})`;
}

/** CLI: `deno task demo [--steps N] [--reference]`. */
export async function demoMain(args: string[]): Promise<number> {
  const i = args.indexOf("--steps");
  const steps = i >= 0 ? Number(args[i + 1]) : 120;
  if (!Number.isInteger(steps) || steps < 1) {
    console.error(`--steps expects a positive integer, got ${args[i + 1]}`);
    return 2;
  }
  const executor = args.includes("--reference") ? new ReferenceExecutor() : undefined;
  const res = await runDemo({ steps, executor });
  const drop = res.losses[0] - res.losses[res.losses.length - 1];
  return drop > 0 ? 0 : 1;
}
