/**
 * The files of a run's model and optimizer: the trainable result as a PEFT adapter or an HF model folder (with the
 * value head of rm and ppo), the optimizer states with the running sums, and the restore of all of it (and the
 * trainer state) from a checkpoint folder.
 * @module
 */
import { encodeTensor, openSafetensors, writeSafetensorsStream } from "../../io/safetensors.ts";
import type { Executor } from "../../exec/executor.ts";
import { packCodes, unpackCodes } from "../../quant/optim8.ts";
import { MODULES_TO_SAVE_KEYS } from "../../io/peft.ts";
import { LoraAdapter, saveAdapter } from "../../nn/lora.ts";
import { OftAdapter, saveOft } from "../../nn/oft.ts";
import type { Model } from "../../nn/model.ts";
import { loadValueHead, saveValueHead, VALUE_HEAD_FILE } from "../../nn/value_head.ts";
import { LOSS_SUM, METRIC_SUMS } from "../step/builder.ts";
import { LOSS_SCALE, SCALE_GROWTH } from "../step/precision.ts";
import type { LogHistoryEntry } from "./trainer_log.ts";

/** Store entries without the model prefix that a checkpoint keeps beside the optimizer states. */
const RUNNING_STATE = [LOSS_SUM, METRIC_SUMS, LOSS_SCALE, SCALE_GROWTH];

/** Training state saved in checkpoints (`trainer_state.json`'s fields that a resume needs). */
export interface TrainState {
  global_step: number;
  epoch: number;
  total_tokens: number;
  log_history: LogHistoryEntry[];
  /** HF's best-metric tracking (train/best_model.ts), written into trainer_state.json. */
  best?: import("../best_model.ts").BestState;
}

/**
 * Writes executor params as F32 tensors (`key` in the file, `name` in the store) one at a time: straight from the store
 * where the executor lends it (`getParamView`: nothing runs on it until the write is done), else one tensor's copy at
 * a time — never a copy of every weight or optimizer state beside the store (1 GB for 135M's AdamW states).
 */
async function writeParams(
  path: string,
  ex: Executor,
  list: readonly { key: string; name: string; shape: readonly number[]; codes?: readonly number[] }[],
  metadata?: Record<string, string>,
): Promise<void> {
  const specs = Object.fromEntries(
    list.map((
      t,
    ) => [t.key, t.codes ? { dtype: "U8" as const, shape: t.codes } : { dtype: "F32" as const, shape: t.shape }]),
  );
  const byKey = new Map(list.map((t) => [t.key, t]));
  await writeSafetensorsStream(path, specs, async (key) => {
    const t = byKey.get(key)!, got = await (ex.getParamView ?? ex.getParam).call(ex, t.name);
    if (t.codes) {
      const n = t.codes.reduce((a, b) => a * b, 1);
      return encodeTensor(key, { dtype: "U8", shape: [...t.codes], data: unpackCodes(got, n) });
    }
    const data = got instanceof Float32Array ? got : Float32Array.from(got);
    return encodeTensor(key, { dtype: "F32", shape: [...t.shape], data });
  }, metadata);
}

async function copyIfExists(from: string, to: string) {
  try {
    await Deno.copyFile(from, to);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Writes the trainable result of `model` into `dir`: a PEFT adapter, or (full) an HF model folder; with `valueHead`
 * (stage rm) also `value_head.safetensors`, as LLaMA-Factory writes it next to the adapter or model.
 */
export async function saveModel(
  model: Model,
  dir: string,
  modelDir: string,
  full: boolean,
  opts: { valueHead?: boolean } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (opts.valueHead) await saveValueHead(model, dir);
  if (model.adapter instanceof LoraAdapter) {
    await saveAdapter(model, dir, { baseModel: modelDir });
  }
  if (model.adapter instanceof OftAdapter) await saveOft(model, dir, modelDir);
  if (full) {
    const list = [...model.params].map(([name, p]) => ({ key: name, name, shape: p.shape }));
    await writeParams(`${dir}/model.safetensors`, model.executor, list, { format: "pt" });
    const cfg = { ...model.config.raw, torch_dtype: "float32" };
    if ("dtype" in cfg) (cfg as Record<string, unknown>).dtype = "float32";
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg, null, 2) + "\n");
    await copyIfExists(`${modelDir}/generation_config.json`, `${dir}/generation_config.json`);
  }
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]) {
    await copyIfExists(`${modelDir}/${f}`, `${dir}/${f}`);
  }
}

/**
 * Writes the optimizer states (`states`: store names with the model prefix, and shapes, as the session's optimizer
 * lists them; saved without the prefix) and the running loss (and metric) sums and fp16 loss scaler to
 * `<dir>/optimizer.safetensors`.
 */
export async function saveOptimizer(
  model: Model,
  dir: string,
  states: readonly { name: string; shape: number[]; dtype?: "f32" | "i32"; codes?: number[] }[],
): Promise<void> {
  const ex = model.executor;
  const list: { key: string; name: string; shape: readonly number[]; codes?: number[] }[] = states.map((s) => ({
    key: s.name.startsWith(model.prefix) ? s.name.slice(model.prefix.length) : s.name,
    name: s.name,
    shape: s.shape,
    // 8-bit codes four to an i32 word: stored as bitsandbytes' uint8 state of the param's shape.
    ...(s.dtype === "i32" && s.codes ? { codes: s.codes } : {}),
  }));
  // Running sums, and the fp16 loss scaler's scale and growth counter (a resumed run goes on with them).
  for (const name of RUNNING_STATE) {
    if (ex.hasParam(name)) list.push({ key: name, name, shape: [(await ex.getParam(name)).length] });
  }
  await writeParams(`${dir}/optimizer.safetensors`, ex, list);
}

/** Loads the trained weights of a checkpoint folder (adapter, or the trainable tensors, and the value head). */
export async function loadWeights(model: Model, dir: string, trainable: string[], full: boolean): Promise<void> {
  const load = (file: string, keyOf: (k: string) => string | undefined) => loadFile(model, `${dir}/${file}`, keyOf);
  if (model.adapter instanceof LoraAdapter || model.adapter instanceof OftAdapter) {
    const keys = new Set(model.adapter.params.keys());
    // resize_vocab's embeddings ride in the adapter as PEFT's modules_to_save.
    const saved = new Set(model.adapter instanceof LoraAdapter ? model.adapter.modulesToSave : []);
    const base = (k: string) => (saved.has(MODULES_TO_SAVE_KEYS[k]) ? MODULES_TO_SAVE_KEYS[k] : undefined);
    await load("adapter_model.safetensors", (k) => (keys.has(k) ? k : base(k)));
  }
  if (full) {
    const keys = new Set(trainable);
    await load("model.safetensors", (k) => (keys.has(k) ? k : undefined));
  }
  try {
    await Deno.stat(`${dir}/${VALUE_HEAD_FILE}`);
    await loadValueHead(model, dir);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

async function loadFile(model: Model, path: string, keyOf: (k: string) => string | undefined): Promise<void> {
  const f = await openSafetensors(path);
  try {
    for (const [k, info] of f.tensors) {
      const name = keyOf(k);
      if (name === undefined) continue;
      if (info.dtype === "U8") {
        // 8-bit optimizer codes (saveOptimizer): back to four to an i32 word.
        const words = packCodes(await f.read(k));
        model.executor.setParam(model.prefix + name, words, [words.length], "i32");
        continue;
      }
      model.executor.setParam(model.prefix + name, await f.readF32(k), [...info.shape], "f32");
    }
  } finally {
    f.close();
  }
}

/**
 * Restores weights (and the value head when the checkpoint has one), optimizer states, running sums and the trainer
 * state from a checkpoint folder.
 */
export async function restore(model: Model, dir: string, trainable: string[], full: boolean): Promise<TrainState> {
  const ex = model.executor;
  const load = (file: string, keyOf: (k: string) => string | undefined) => loadFile(model, `${dir}/${file}`, keyOf);
  await loadWeights(model, dir, trainable, full);
  const sums = new Set(RUNNING_STATE);
  await load("optimizer.safetensors", (k) => (sums.has(k) ? undefined : k));
  const f = await openSafetensors(`${dir}/optimizer.safetensors`);
  try {
    for (const name of sums) {
      const info = f.tensors.get(name);
      if (info) ex.setParam(name, await f.readF32(name), [...info.shape]);
    }
  } finally {
    f.close();
  }
  const s = JSON.parse(await Deno.readTextFile(`${dir}/trainer_state.json`));
  // trainer_state.json names the token count as HF does (num_input_tokens_seen).
  return { ...s, total_tokens: s.total_tokens ?? s.num_input_tokens_seen ?? 0 } as TrainState;
}
