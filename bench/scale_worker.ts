/**
 * Bench "scale"'s Whetstone side, one process per model × method × executor (a line worker, bench/line_worker.ts),
 * so each one's memory is its own: `deno run -A --unstable-webgpu bench/scale_worker.ts '<json>'` with `dir` (a model
 * folder), `executor` ("onnx" | "webgpu"), `method` ("lora" | "qlora": NF4 with double quantization), `batch`, `seq`.
 *
 * It starts the executor, loads the folder with `loadModel` (frozen weights in their stored dtype, or quantized as
 * they load) measuring the load's peak resident memory (VmHWM, reset before the load through /proc/self/clear_refs),
 * attaches LoRA (r 8, alpha 16, every linear), traces and compiles the trainer's AdamW step, runs it once, and prints
 * its ready line: the load, compile and first-step figures, the planned memory of the step
 * (engine/train/memory_plan.ts) and what was allocated (WebGPU: the store plus what the step owns, device bytes;
 * ONNX Runtime: the process's resident memory above the started executor). Then each request `{warmup, steps}` runs
 * that many steps and answers `{seconds, loss, peak_rss_bytes}`. A step that cannot be compiled or run (a WebGPU
 * limit, say) gives a ready line `{skipped: reason}` with what was measured before it.
 * @module
 */
import { loadModel } from "../engine/nn/model.ts";
import { attachAdapter } from "../engine/nn/lora.ts";
import { openModelFolder } from "../engine/io/hf_folder.ts";
import type { CompiledGraph, Executor } from "../engine/exec/executor.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { adamwStepPlan, LOSS_SUM, traceTrainStep } from "../engine/train/step/lm.ts";
import { stateNames } from "../engine/train/step/optimizer.ts";
import { planTrainingMemory } from "../engine/train/memory_plan.ts";
import { benchBatch } from "./train.ts";

/** What the worker is asked to run. */
export interface ScaleWorkerArgs {
  dir: string;
  executor: "onnx" | "webgpu";
  method: "lora" | "qlora";
  batch: number;
  seq: number;
}

/** Resident memory now and its peak (VmRSS, VmHWM of /proc/self/status), in bytes. */
export function memory(): { rss: number; hwm: number } {
  const text = Deno.readTextFileSync("/proc/self/status");
  const kb = (key: string) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"))?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0); false where the kernel does not allow it. */
export function resetPeak(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

const say = (o: Record<string, unknown>) => console.log(JSON.stringify(o));
const msg = (e: unknown) => (e instanceof Error ? e.message : String(e)).split("\n")[0].slice(0, 300);

/** Runs `f` inside WebGPU validation and out-of-memory error scopes; throws the first error they caught. */
async function scoped<T>(ex: Executor, f: () => Promise<T>): Promise<T> {
  if (!(ex instanceof WebGpuExecutor)) return await f();
  ex.device.pushErrorScope("out-of-memory");
  ex.device.pushErrorScope("validation");
  const out = await f();
  const v = await ex.device.popErrorScope();
  const o = await ex.device.popErrorScope();
  if (v || o) throw new Error(`WebGPU ${v ? "validation" : "out-of-memory"} error: ${(v ?? o)!.message}`);
  return out;
}

async function main(a: ScaleWorkerArgs): Promise<void> {
  const m0 = memory();
  let ex: Executor;
  try {
    if (a.executor === "webgpu" && !await hasGpu()) throw new Error("no WebGPU adapter");
    ex = a.executor === "webgpu" ? await WebGpuExecutor.create() : await OnnxExecutor.create();
  } catch (e) {
    return say({ skipped: `executor ${a.executor}: ${msg(e)}` });
  }
  const started = memory().rss;
  const peakReset = resetPeak();
  const folder = await openModelFolder(a.dir);
  let fileBytes = 0;
  for (const t of folder.tensors.values()) fileBytes += t.byteLength;
  folder.close();
  const out: Record<string, unknown> = {
    executor: a.executor,
    process_start_rss_bytes: m0.rss,
    executor_rss_bytes: started,
    peak_reset: peakReset,
    file_bytes: fileBytes,
  };
  let t0 = performance.now();
  const quantization = a.method === "qlora" ? { bits: 4 as const, type: "nf4" as const, doubleQuant: true } : undefined;
  const model = await loadModel(a.dir, { executor: ex, dtype: "stored", quantization });
  const loaded = memory();
  out.load_s = (performance.now() - t0) / 1000;
  out.load_peak_bytes = loaded.hwm - started;
  out.load_held_bytes = loaded.rss - started;
  if (ex instanceof WebGpuExecutor) out.store_bytes = ex.storeBytes;

  const adapter = await attachAdapter(model, { r: 8, alpha: 16, targets: ["all"] });
  const trainable = [...adapter.params.keys()];
  for (const name of trainable) {
    const shape = adapter.params.get(name)!.shape;
    const zeros = new Float32Array(shape.reduce((x, y) => x * y, 1));
    ex.setParam(stateNames(name).m, zeros, shape);
    ex.setParam(stateNames(name).v, zeros, shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  const plan = await planTrainingMemory(model.config, { method: a.method, batch: a.batch, seq: a.seq });
  out.planned_bytes = plan.peakBytes;
  out.planned_weights_bytes = plan.weights;
  out.planned_arena_bytes = plan.arena;

  const { feeds } = benchBatch({ batch: a.batch, seq: a.seq, vocab: model.config.vocab });
  let step: CompiledGraph;
  try {
    t0 = performance.now();
    step = await scoped(ex, () => ex.compile(traceTrainStep(model, adamwStepPlan(a.batch, a.seq, trainable))));
    out.compile_s = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const r = await scoped(ex, () => step.run(feeds, ["loss"]));
    out.first_step_s = (performance.now() - t0) / 1000;
    out.first_loss = r.loss[0];
    if (!Number.isFinite(r.loss[0])) throw new Error(`the first step's loss is ${r.loss[0]}`);
  } catch (e) {
    return say({ ...out, skipped: `step: ${msg(e)}`, peak_rss_bytes: memory().hwm });
  }
  const m1 = memory();
  if (ex instanceof WebGpuExecutor) {
    out.allocated_bytes = ex.storeBytes + (step.stats.ownedBytes ?? 0);
    out.allocated_measure = "device bytes: store + the step's own buffers";
  } else {
    out.allocated_bytes = m1.rss - started;
    out.allocated_measure = "resident memory above the started executor";
  }
  say({ ready: true, ...out, peak_rss_bytes: m1.hwm });

  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let rest = "";
  for await (const chunk of lines) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    for (const line of parts.filter((l) => l.trim())) {
      const req = JSON.parse(line) as { warmup?: number; steps: number };
      let loss = NaN;
      for (let i = 0; i < (req.warmup ?? 1); i++) loss = (await step.run(feeds, ["loss"])).loss[0];
      const seconds: number[] = [];
      for (let i = 0; i < req.steps; i++) {
        t0 = performance.now();
        loss = (await step.run(feeds, ["loss"])).loss[0];
        seconds.push((performance.now() - t0) / 1000);
      }
      say({ seconds, loss, peak_rss_bytes: memory().hwm });
    }
  }
  ex.dispose();
}

if (import.meta.main) await main(JSON.parse(Deno.args[0]) as ScaleWorkerArgs);
