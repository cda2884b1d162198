/**
 * Bench "scale": real model sizes. One LoRA and one QLoRA (NF4, double quantization) AdamW step, batch 1 × 128, of
 * random-weight folders shaped like Qwen2.5-0.5B and Llama-3.2-1B (sharded bf16 safetensors, written once by
 * fixtures/scale/make_scale.ts into `.cache/whetstone/scale/`), on ONNX Runtime and WebGPU, beside PyTorch + PEFT in
 * a separate process where a Python with torch is configured (bench/torch_scale.py). Per model × method × executor:
 * the load (seconds, peak resident memory against the checkpoint's size), compile and first-step seconds, the first
 * loss (PyTorch's too: the same base model on the same batch), tokens/s in alternating rounds with PyTorch (as bench
 * "train"), planned against allocated bytes, and the process's peak resident memory. Whetstone's side runs in its
 * own process per case (bench/scale_worker.ts) so each one's memory is its own. A case that cannot run (a WebGPU
 * binding limit, no adapter) is a `skipped` line with the reason. Then the planned memory of LoRA and QLoRA on
 * Gemma-2B and Llama-2-7B shapes (batch 1 × 1024, activation checkpointing: bench "memory"'s setting) beside the
 * LlamaFactory paper's figures.
 *
 * Knobs: `WHETSTONE_SCALE_MODELS` (qwen2.5-0.5b,llama3.2-1b), `WHETSTONE_SCALE_METHODS` (lora,qlora),
 * `WHETSTONE_SCALE_EXECUTORS` (onnx,webgpu), `WHETSTONE_SCALE_ROUNDS` (2), `WHETSTONE_SCALE_STEPS` (2 timed steps a
 * round, after one warm-up), `WHETSTONE_SCALE_SEQ` (128), `WHETSTONE_SCALE_BATCH` (1), `WHETSTONE_SCALE_ALTERNATE`
 * (on; "off" runs PyTorch's rounds after Whetstone's, one process at a time, for a machine short of memory),
 * `WHETSTONE_SCALE_PAPER` (on; "off" skips the paper shapes). A worker that dies (out of memory, say) is a `step …
 * failed` line, and the bench goes on.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { LineWorker } from "./line_worker.ts";
import { TorchWorker } from "./torch_worker.ts";
import { torchThreads } from "./torch_python.ts";
import { envInt } from "./rounds.ts";
import { benchBatch } from "./train.ts";
import { rateSpread, spread, spreadFields } from "./stats.ts";
import { PAPER, PAPER_GEMMA_QLORA_PEAK, PAPER_MODELS } from "./memory.ts";
import { decoderConfig } from "../engine/nn/config.ts";
import { planTrainingMemory } from "../engine/train/memory_plan.ts";
import type { ScaleWorkerArgs } from "./scale_worker.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MODELS = ["qwen2.5-0.5b", "llama3.2-1b"];
const METHODS = ["lora", "qlora"] as const;
const EXECUTORS = ["onnx", "webgpu"] as const;

/** A comma list from the environment, each entry checked against `allowed`. */
function envList<T extends string>(name: string, allowed: readonly T[]): T[] {
  const v = Deno.env.get(name);
  if (!v) return [...allowed];
  const items = v.split(",").map((s) => s.trim()).filter(Boolean);
  for (const i of items) {
    if (!allowed.includes(i as T)) throw new Error(`${name}: "${i}" is not one of ${allowed.join(", ")}`);
  }
  return items as T[];
}

/** The folder of a scale model, written by fixtures/scale/make_scale.ts when missing (it prints the folder). */
async function modelFolder(name: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}fixtures/scale/make_scale.ts`, name],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`fixtures/scale/make_scale.ts ${name} failed (code ${out.code})`);
  return new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
}

const MiB = (b: unknown) => Number(((b as number) / 2 ** 20).toFixed(1));

/** The measurements of a ready line (either side). */
function readyLines(p: Record<string, string | number | boolean>, r: Record<string, unknown>): Measurement[] {
  const m: Measurement[] = [];
  const add = (metric: string, value: unknown, unit: string, extra: Record<string, string | number | boolean> = {}) => {
    if (typeof value === "number" && Number.isFinite(value)) {
      m.push({ bench: "scale", ...p, metric, value, unit, ...extra });
    }
  };
  add("load_s", r.load_s, "s");
  if (typeof r.load_peak_bytes === "number") {
    const file = r.file_bytes as number | undefined;
    add("load_peak_rss", MiB(r.load_peak_bytes), "MiB", file ? { file_MiB: MiB(file) } : {});
    if (file) add("load_peak_over_file", Number((r.load_peak_bytes / file).toFixed(3)), "x");
  }
  add("load_held_rss", MiB(r.load_held_bytes), "MiB");
  add("store_bytes", MiB(r.store_bytes), "MiB", { planned_weights_MiB: MiB(r.planned_weights_bytes ?? NaN) });
  add("compile_s", r.compile_s, "s");
  add("first_step_s", r.first_step_s, "s");
  add("first_loss", r.first_loss, "nats");
  add("planned_bytes", MiB(r.planned_bytes), "MiB", {
    weights_MiB: MiB(r.planned_weights_bytes ?? NaN),
    arena_MiB: MiB(r.planned_arena_bytes ?? NaN),
  });
  add(
    "allocated_bytes",
    MiB(r.allocated_bytes),
    "MiB",
    r.allocated_measure ? { measure: String(r.allocated_measure) } : {},
  );
  if (typeof r.planned_bytes === "number" && typeof r.allocated_bytes === "number") {
    add("allocated_over_planned", Number((r.allocated_bytes / r.planned_bytes).toFixed(3)), "x");
  }
  return m;
}

/** Bench "scale". */
export const scaleBench: Bench = {
  name: "scale",
  description: "Qwen2.5-0.5B / Llama-3.2-1B shapes (random bf16, sharded): LoRA and QLoRA step (1 × 128) on ONNX " +
    "Runtime and WebGPU vs PyTorch + PEFT: load memory, tokens/s, planned vs allocated; Gemma-2B / Llama-2-7B planned",
  async *run(): AsyncIterable<Measurement> {
    const models = envList("WHETSTONE_SCALE_MODELS", MODELS);
    const methods = envList("WHETSTONE_SCALE_METHODS", METHODS);
    const executors = envList("WHETSTONE_SCALE_EXECUTORS", EXECUTORS);
    const rounds = envInt("WHETSTONE_SCALE_ROUNDS", 2), steps = envInt("WHETSTONE_SCALE_STEPS", 2);
    const batch = envInt("WHETSTONE_SCALE_BATCH", 1), seq = envInt("WHETSTONE_SCALE_SEQ", 128);
    const tokens = batch * seq;
    // Alternating keeps both sides' processes up at once; "off" runs PyTorch after Whetstone (half the memory).
    const alternate = Deno.env.get("WHETSTONE_SCALE_ALTERNATE") !== "off";
    for (const name of models) {
      const dir = await modelFolder(name);
      const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      const { hf } = benchBatch({ batch, seq, vocab: config.vocab_size });
      for (const method of methods) {
        const p = { model: name, method, batch, seq, rounds, steps };
        const tp = { ...p, executor: "pytorch" };
        const theirs: number[][] = [];
        let torch: TorchWorker | undefined;
        let torchPeak = 0;
        /** Starts the PyTorch side (its lines, or why it is absent). */
        const startTorch = async function* (): AsyncGenerator<Measurement> {
          const t = await TorchWorker.start("torch_scale.py", { dir, method, ...hf, threads: torchThreads() });
          const absent = t instanceof TorchWorker ? t.ready.absent : t.absent;
          if (absent !== undefined) {
            yield { bench: "scale", ...p, metric: "torch_baseline", value: 0, unit: "absent", note: String(absent) };
            if (t instanceof TorchWorker) await t.close();
            return;
          }
          torch = t as TorchWorker;
          torchPeak = torch.ready.peak_rss_bytes as number;
          yield* readyLines({ ...tp, threads: Number(torch.ready.threads) }, torch.ready);
        };
        /** One PyTorch round (seconds of its timed steps). */
        const torchRound = async () => {
          const b = await torch!.request<{ seconds: number[]; peak_rss_bytes: number }>({ warmup: 1, steps });
          torchPeak = Math.max(torchPeak, b.peak_rss_bytes);
          theirs.push(b.seconds);
          return b.seconds;
        };
        if (alternate) yield* startTorch();
        const ourRounds = new Map<string, number[][]>();
        for (const executor of executors) {
          const args: ScaleWorkerArgs = { dir, executor, method, batch, seq };
          const op = { ...p, executor };
          const ours = await LineWorker.launch("scale_worker.ts", Deno.execPath(), [
            "run",
            "-A",
            "--unstable-webgpu",
            `${ROOT}bench/scale_worker.ts`,
            JSON.stringify(args),
          ]).catch((e: Error) => ({
            ready: { skipped: `the worker ended before its first step: ${e.message}` } as Record<string, unknown>,
          }));
          yield* readyLines(op, ours.ready);
          if (!ours.ready.ready || !(ours instanceof LineWorker)) {
            const note = String(ours.ready.skipped);
            yield { bench: "scale", ...op, metric: "step", value: 0, unit: "skipped", note };
            if (ours instanceof LineWorker) await ours.close();
            continue;
          }
          const mine: number[][] = [], pairs: number[] = [];
          let peak = ours.ready.peak_rss_bytes as number;
          const load = Deno.loadavg()[0];
          try {
            for (let r = 0; r < rounds; r++) {
              const a = await ours.request<{ seconds: number[]; peak_rss_bytes: number }>({ warmup: 1, steps });
              mine.push(a.seconds);
              peak = Math.max(peak, a.peak_rss_bytes);
              if (torch) pairs.push(spread(await torchRound()).median / spread(a.seconds).median);
            }
          } catch (e) {
            // The worker died (the kernel's OOM killer, say): say so and go on with the next case.
            const note = `the worker ended during round ${mine.length + 1}: ${(e as Error).message}`;
            yield { bench: "scale", ...op, metric: "step", value: 0, unit: "failed", note };
          }
          await ours.close();
          if (!mine.length) continue;
          ourRounds.set(executor, mine);
          const load1 = Number(((load + Deno.loadavg()[0]) / 2).toFixed(2));
          const s = rateSpread(tokens, mine.flat());
          yield {
            bench: "scale",
            ...op,
            metric: "tokens_per_s",
            value: s.median,
            unit: "tok/s",
            ...spreadFields(s),
            load1,
          };
          yield { bench: "scale", ...op, metric: "peak_rss", value: MiB(peak), unit: "MiB" };
          if (pairs.length) {
            const r = spread(pairs);
            yield { bench: "scale", ...op, metric: "ratio_vs_pytorch", value: r.median, unit: "x", ...spreadFields(r) };
          }
        }
        if (!alternate) {
          yield* startTorch();
          if (torch) { for (let r = 0; r < rounds; r++) await torchRound(); }
        }
        if (!torch) continue;
        const threads = Number((torch as TorchWorker).ready.threads);
        if (theirs.length) {
          const t = rateSpread(tokens, theirs.flat());
          yield {
            bench: "scale",
            ...tp,
            threads,
            metric: "tokens_per_s",
            value: t.median,
            unit: "tok/s",
            ...spreadFields(t),
          };
          if (!alternate) {
            // Not paired in time: the ratio of the medians, one figure per executor.
            for (const [executor, mine] of ourRounds) {
              const ratio = spread(theirs.flat()).median / spread(mine.flat()).median;
              yield {
                bench: "scale",
                ...p,
                executor,
                metric: "ratio_vs_pytorch",
                value: ratio,
                unit: "x",
                paired: false,
              };
            }
          }
        }
        yield { bench: "scale", ...tp, threads, metric: "peak_rss", value: MiB(torchPeak), unit: "MiB" };
        await (torch as TorchWorker).close();
      }
    }
    if (Deno.env.get("WHETSTONE_SCALE_PAPER") === "off") return;
    // Planned only: these shapes do not fit this machine's time (bench "memory" has every method).
    for (const [model, cfg] of Object.entries(PAPER_MODELS)) {
      for (const method of ["lora", "qlora"] as const) {
        const m = await planTrainingMemory(decoderConfig(cfg), { method, batch: 1, seq: 1024, checkpoint: true });
        const p = { model, method, batch: 1, seq: 1024, checkpoint: true };
        yield { bench: "scale", ...p, metric: "planned_bytes", value: MiB(m.peakBytes), unit: "MiB" };
        yield { bench: "scale", ...p, metric: "planned_bytes_per_param", value: m.bytesPerParam, unit: "B" };
        if (PAPER[method]) {
          yield { bench: "scale", ...p, metric: "paper_bytes_per_param", value: PAPER[method], unit: "B" };
        }
        if (model === "gemma-2b" && method === "qlora") {
          yield { bench: "scale", ...p, metric: "paper_peak_bytes", value: MiB(PAPER_GEMMA_QLORA_PEAK), unit: "MiB" };
        }
      }
    }
  },
};
