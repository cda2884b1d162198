/**
 * Vocabulary growth as LLaMA-Factory does it (`add_tokens`, `add_special_tokens`, `new_special_tokens_config`,
 * `init_special_tokens`, `resize_vocab`): tokens are added to `tokenizer.json`'s `added_tokens` (ids from
 * `len(tokenizer)` on, as `tokenizer.add_tokens` gives them), and the input embedding (and an untied `lm_head`) grows
 * to the tokenizer's length padded to a multiple of 64, as LLaMA-Factory's `resize_embedding_layer` calls
 * `resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)`.
 *
 * Grown rows are initialised as LLaMA-Factory's loader does (it passes no token list, so the tail slice is used):
 * with `noise_init`, every grown row (padding included) becomes the mean of the old rows plus N(0, 1/√dim) noise
 * (`_noisy_mean_initialization`); with `desc_init` / `desc_init_w_noise`, the rows of the config's tokens become the
 * mean embedding of each description's tokens (`_description_based_initialization`) and other grown rows keep what
 * transformers' `_init_weights` gives a fresh row, N(0, initializer_range); LF's newest `vocab_mean` and `noise` fill
 * every grown row with the old rows' mean or with N(0, their std) ({@link plainInit}). Old rows are copied unchanged,
 * so the logits of old ids do not move. Source: hiyouga/LLaMA-Factory src/llamafactory/model/model_utils/embedding.py and
 * hparams/model_args.py (`BaseModelArguments.__post_init__`).
 *
 * @example
 * ```ts
 * const spec = await vocabSpec({ add_special_tokens: "<think>,</think>" });
 * const r = await growVocab("models/tiny", "out/tiny-grown", spec, { seed: 42 });
 * // r.ids: {"<think>": 151669, ...}; load "out/tiny-grown" with loadModel and loadTokenizer.
 * ```
 * @module
 */
import { parseYaml } from "../../deps.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { openModelFolder } from "../io/hf_folder.ts";
import { type TensorData, writeSafetensors } from "../io/safetensors.ts";
import { Rng } from "../util/rng.ts";
import { dequantizedAtLoad } from "./mxfp4.ts";

/**
 * How new rows are initialised (LLaMA-Factory's `init_special_tokens`; its newest names `vocab_mean_noise`,
 * `description` and `description_noise` are aliases of the first three, resolved by the config keys).
 */
export type InitSpecialTokens = "noise_init" | "desc_init" | "desc_init_w_noise" | "vocab_mean" | "noise";

/** The tokens to add, as LLaMA-Factory's model arguments resolve them. */
export interface VocabSpec {
  /** Non-special tokens (`add_tokens`). */
  readonly tokens: readonly string[];
  /** Special tokens (`add_special_tokens`, or the keys of `new_special_tokens_config`, which wins). */
  readonly specialTokens: readonly string[];
  /** token → description, from `new_special_tokens_config`; null without one. */
  readonly descriptions: Readonly<Record<string, string>> | null;
  /** `init_special_tokens`, falling back to `noise_init` without descriptions (LLaMA-Factory warns and falls back). */
  readonly init: InitSpecialTokens;
  /** Notes for the run log (the warnings LLaMA-Factory prints). */
  readonly warnings: readonly string[];
}

/** The LLaMA-Factory keys {@link vocabSpec} reads. */
export interface VocabArgs {
  add_tokens?: string | readonly string[] | null;
  add_special_tokens?: string | readonly string[] | null;
  /** A YAML (or JSON) file mapping each new special token to its description. */
  new_special_tokens_config?: string | null;
  init_special_tokens?: string | null;
}

/** An argument error naming its key (shown as HTTP 400 `{error, field}` by the routes). */
export class VocabArgError extends Error {
  /** Makes the error; `field` is the LLaMA-Factory key at fault. */
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

const INITS: readonly InitSpecialTokens[] = ["noise_init", "desc_init", "desc_init_w_noise", "vocab_mean", "noise"];

function commaList(field: string, v: string | readonly string[] | null | undefined): string[] {
  if (v === null || v === undefined) return [];
  const items = typeof v === "string" ? v.split(",") : [...v];
  const out = items.map((t) => {
    if (typeof t !== "string") throw new VocabArgError(field, `expected strings, got ${JSON.stringify(t)}`);
    return t.trim();
  });
  if (out.some((t) => t === "")) throw new VocabArgError(field, `empty token in ${JSON.stringify(v)}`);
  return out;
}

/**
 * LLaMA-Factory's `BaseModelArguments.__post_init__` for the vocabulary keys: comma lists split and stripped;
 * `new_special_tokens_config` (a YAML mapping token → description) takes precedence over `add_special_tokens`;
 * `desc_init*` without descriptions falls back to `noise_init`.
 */
export async function vocabSpec(a: VocabArgs): Promise<VocabSpec> {
  const warnings: string[] = [];
  const init = (a.init_special_tokens ?? "noise_init") as InitSpecialTokens;
  if (!INITS.includes(init)) {
    throw new VocabArgError("init_special_tokens", `expected one of ${INITS.join(", ")}, got ${JSON.stringify(init)}`);
  }
  const tokens = commaList("add_tokens", a.add_tokens);
  let specialTokens = commaList("add_special_tokens", a.add_special_tokens);
  let descriptions: Record<string, string> | null = null;
  if (a.new_special_tokens_config !== null && a.new_special_tokens_config !== undefined) {
    const path = a.new_special_tokens_config;
    let parsed: unknown;
    try {
      parsed = parseYaml(await Deno.readTextFile(path));
    } catch (e) {
      throw new VocabArgError("new_special_tokens_config", `cannot read ${path}: ${(e as Error).message}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new VocabArgError(
        "new_special_tokens_config",
        `YAML config must be a dictionary mapping tokens to descriptions, got ${JSON.stringify(parsed)}`,
      );
    }
    descriptions = {};
    for (const [k, v] of Object.entries(parsed)) descriptions[k] = String(v);
    if (a.add_special_tokens !== null && a.add_special_tokens !== undefined) {
      warnings.push(
        `Both 'new_special_tokens_config' and 'add_special_tokens' are set. Using tokens from config: ${
          JSON.stringify(Object.keys(descriptions))
        }`,
      );
    }
    specialTokens = Object.keys(descriptions);
  }
  let useInit = init;
  if (init.startsWith("desc_") && descriptions === null) {
    warnings.push(`init_special_tokens='${init}' requires new_special_tokens_config. Falling back to 'noise_init'`);
    useInit = "noise_init";
  }
  return { tokens, specialTokens, descriptions, init: useInit, warnings };
}

/** True when the spec adds anything. */
export function addsTokens(spec: VocabSpec): boolean {
  return spec.tokens.length + spec.specialTokens.length > 0;
}

type Json = Record<string, unknown>;

/**
 * Adds tokens to parsed `tokenizer.json` / `tokenizer_config.json` as `tokenizer.add_tokens` /
 * `add_special_tokens({"additional_special_tokens": ...}, replace_extra_special_tokens=False)` do: an added token
 * keeps its id (a special one is still listed as an additional special token); a vocabulary piece becomes an added
 * token with its id; others get ids from one past the largest id on. Returns the new files, every requested token's
 * id and how many tokens became added tokens (transformers' count, which turns `resize_vocab` on).
 */
export function addTokensToFiles(
  tokenizerJson: Json,
  config: Json,
  spec: Pick<VocabSpec, "tokens" | "specialTokens">,
): { tokenizerJson: Json; config: Json; ids: Record<string, number>; added: number } {
  const tj = structuredClone(tokenizerJson);
  const cfg = structuredClone(config);
  const addedTokens = (Array.isArray(tj.added_tokens) ? tj.added_tokens : []) as Json[];
  tj.added_tokens = addedTokens;
  const vocab = ((tj.model as Json | undefined)?.vocab ?? {}) as Record<string, number> | [string, number][];
  const pieces = new Map<string, number>(), known = new Map<string, number>();
  if (Array.isArray(vocab)) vocab.forEach(([t], i) => pieces.set(t, i)); // Unigram: [piece, score] by id
  else for (const [t, id] of Object.entries(vocab)) pieces.set(t, id);
  for (const t of addedTokens) known.set(t.content as string, t.id as number);
  let next = 0;
  for (const id of [...pieces.values(), ...known.values()]) if (id >= next) next = id + 1;
  const ids: Record<string, number> = {};
  let added = 0;
  const add = (content: string, special: boolean) => {
    const id = known.get(content);
    if (id !== undefined) {
      ids[content] = id;
      return;
    }
    // transformers: a vocabulary piece becomes an added token with its own id (counted, the length unchanged)
    const at = pieces.get(content) ?? next++;
    const entry = { id: at, content, single_word: false, lstrip: false, rstrip: false, normalized: !special, special };
    addedTokens.push(entry);
    known.set(content, at);
    ids[content] = at;
    added++;
    if (cfg.added_tokens_decoder && typeof cfg.added_tokens_decoder === "object") {
      const { id: _id, ...rest } = entry;
      (cfg.added_tokens_decoder as Json)[String(entry.id)] = rest;
    }
  };
  for (const t of spec.tokens) add(t, false);
  for (const t of spec.specialTokens) add(t, true);
  if (spec.specialTokens.length) {
    const key = Array.isArray(cfg.extra_special_tokens) ? "extra_special_tokens" : "additional_special_tokens";
    const list = (Array.isArray(cfg[key]) ? cfg[key] : []) as unknown[];
    const have = new Set(list.map((t) => (typeof t === "string" ? t : (t as Json)?.content)));
    cfg[key] = [...list, ...spec.specialTokens.filter((t) => !have.has(t))];
  }
  return { tokenizerJson: tj, config: cfg, ids, added };
}

/**
 * LLaMA-Factory's `_noisy_mean_initialization` on a row-major [rows, dim] matrix: each row of `newIds` becomes the
 * mean of all other rows plus N(0, 1/√dim) noise drawn from `rng`.
 */
export function noisyMeanInit(w: Float32Array, dim: number, newIds: readonly number[], rng: Rng): void {
  const rows = w.length / dim;
  const skip = new Set(newIds);
  const mean = new Float64Array(dim);
  let n = 0;
  for (let r = 0; r < rows; r++) {
    if (skip.has(r)) continue;
    n++;
    for (let j = 0; j < dim; j++) mean[j] += w[r * dim + j];
  }
  for (let j = 0; j < dim; j++) mean[j] /= n;
  const std = 1 / Math.sqrt(dim);
  for (const r of newIds) for (let j = 0; j < dim; j++) w[r * dim + j] = mean[j] + rng.normal() * std;
}

/**
 * LLaMA-Factory's newest `_vocab_mean_initialization` ("vocab_mean": each row of `newIds` becomes the mean of the other
 * rows) and `_noise_initialization` ("noise": N(0, σ), σ the unbiased standard deviation of all the other rows'
 * elements, torch's `Tensor.std()`).
 */
export function plainInit(
  w: Float32Array,
  dim: number,
  newIds: readonly number[],
  how: "vocab_mean" | "noise",
  rng: Rng,
): void {
  const skip = new Set(newIds), rows = w.length / dim;
  const mean = new Float64Array(dim);
  let n = 0, total = 0;
  for (let r = 0; r < rows; r++) {
    if (skip.has(r)) continue;
    n++;
    for (let j = 0; j < dim; j++) {
      mean[j] += w[r * dim + j];
      total += w[r * dim + j];
    }
  }
  for (let j = 0; j < dim; j++) mean[j] /= n;
  let ss = 0;
  const all = total / (n * dim);
  for (let r = 0; r < rows; r++) if (!skip.has(r)) { for (let j = 0; j < dim; j++) ss += (w[r * dim + j] - all) ** 2; }
  const std = Math.sqrt(ss / (n * dim - 1));
  for (const r of newIds) {
    for (let j = 0; j < dim; j++) w[r * dim + j] = how === "vocab_mean" ? mean[j] : rng.normal() * std;
  }
}

/**
 * LLaMA-Factory's `_description_based_initialization`: each token's row becomes the mean embedding (rows of `embed`)
 * of its description's ids that are not new tokens, else the mean of all other rows; `noise` adds N(0, 1/√dim).
 */
export function descriptionInit(
  w: Float32Array,
  embed: Float32Array,
  dim: number,
  rowsById: ReadonlyMap<number, readonly number[]>,
  newIds: readonly number[],
  noise: boolean,
  rng: Rng,
): void {
  const rows = w.length / dim;
  const skip = new Set(newIds);
  const fallback = new Float64Array(dim);
  let n = 0;
  for (let r = 0; r < rows; r++) {
    if (skip.has(r)) continue;
    n++;
    for (let j = 0; j < dim; j++) fallback[j] += w[r * dim + j];
  }
  for (let j = 0; j < dim; j++) fallback[j] /= n;
  const std = 1 / Math.sqrt(dim);
  for (const [id, descIds] of rowsById) {
    const valid = descIds.filter((t) => !skip.has(t) && t >= 0 && t < rows);
    const base = new Float64Array(dim);
    if (valid.length === 0) base.set(fallback);
    else {
      for (const t of valid) for (let j = 0; j < dim; j++) base[j] += embed[t * dim + j];
      for (let j = 0; j < dim; j++) base[j] /= valid.length;
    }
    for (let j = 0; j < dim; j++) w[id * dim + j] = base[j] + (noise ? rng.normal() * std : 0);
  }
}

/** Options of {@link growVocab}. */
export interface GrowVocabOptions {
  /** Seed of the noise (the run's `seed`). Default 42. */
  seed?: number;
  /** Embedding rows are padded to a multiple of this (LLaMA-Factory: 64). */
  padToMultipleOf?: number;
}

/** What {@link growVocab} did. */
export interface GrowVocabResult {
  /** Every requested token's id. */
  ids: Record<string, number>;
  /** How many tokens became added tokens (transformers' count: a vocabulary piece counts, an added token not). */
  added: number;
  /** Embedding rows before and after (equal when nothing had to grow). */
  oldRows: number;
  newRows: number;
  /** The names of the grown weights (`model.embed_tokens.weight`, and `lm_head.weight` when untied). */
  resized: string[];
}

const EMBED = "model.embed_tokens.weight";
const HEAD = "lm_head.weight";

/**
 * Writes `src` (a HF model folder) to `out` with the tokens of `spec` added to its tokenizer and, when `tokenizer`
 * outgrows the embedding, the embedding (and an untied head) resized and the new rows initialised as
 * LLaMA-Factory does. Every other file and weight is copied as it is. A quantized folder is refused, as
 * LLaMA-Factory refuses it ("Cannot resize embedding layers of a quantized model."), but for gpt-oss's MXFP4, which is
 * dequantized at load (mxfp4.ts) and so not quantized by then; its MXFP4 experts are copied as they are.
 */
export async function growVocab(
  src: string,
  out: string,
  spec: VocabSpec,
  opts: GrowVocabOptions = {},
): Promise<GrowVocabResult> {
  const pad = opts.padToMultipleOf ?? 64;
  const rng = new Rng(opts.seed ?? 42);
  const tj = JSON.parse(await Deno.readTextFile(`${src}/tokenizer.json`));
  let cfgText: string | undefined;
  try {
    cfgText = await Deno.readTextFile(`${src}/tokenizer_config.json`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const files = addTokensToFiles(tj, cfgText ? JSON.parse(cfgText) : {}, spec);
  await Deno.mkdir(out, { recursive: true });
  for await (const e of Deno.readDir(src)) {
    if (e.isFile && !/\.safetensors(\.index\.json)?$/.test(e.name) && e.name !== "config.json") {
      await Deno.copyFile(`${src}/${e.name}`, `${out}/${e.name}`);
    }
  }
  await Deno.writeTextFile(`${out}/tokenizer.json`, JSON.stringify(files.tokenizerJson, null, 2));
  await Deno.writeTextFile(`${out}/tokenizer_config.json`, JSON.stringify(files.config, null, 2));
  const tok = await loadTokenizer(out);
  using folder = await openModelFolder(src);
  const config = { ...folder.config };
  if (config.quantization_config && !dequantizedAtLoad(config)) {
    throw new VocabArgError("resize_vocab", "Cannot resize embedding layers of a quantized model.");
  }
  const embed = folder.tensors.get(EMBED);
  if (!embed || embed.shape.length !== 2) throw new Error(`${src}: no 2-D ${EMBED} to resize`);
  const [oldRows, dim] = embed.shape;
  const needed = tok.vocabSize;
  const newRows = needed > oldRows ? Math.ceil(needed / pad) * pad : oldRows;
  // LLaMA-Factory's loader passes no token list: noise_init fills every grown row (tail slice), desc_init the rows
  // of the config's tokens; nothing is initialised when the embedding did not have to grow.
  const tail = Array.from({ length: newRows - oldRows }, (_, i) => oldRows + i);
  const resized = [EMBED];
  if (folder.tensors.has(HEAD) && config.tie_word_embeddings !== true) resized.push(HEAD);
  const range = typeof config.initializer_range === "number" ? config.initializer_range : 0.02;
  const tensors: Record<string, TensorData> = {};
  let inputEmbed: Float32Array | undefined;
  for (const name of [EMBED, ...resized.filter((n) => n !== EMBED)]) {
    const t = folder.tensors.get(name)!;
    const old = await folder.readF32(name);
    const w = new Float32Array(newRows * dim);
    w.set(old);
    for (let i = old.length; i < w.length; i++) w[i] = rng.normal() * range;
    if (name === EMBED) inputEmbed = w;
    if (newRows === oldRows) {
      // nothing grew: the weights stay as they are
    } else if (spec.init === "vocab_mean" || spec.init === "noise") {
      plainInit(w, dim, tail, spec.init, rng);
    } else if (spec.descriptions && spec.init !== "noise_init") {
      const byId = new Map<number, number[]>();
      for (const [token, text] of Object.entries(spec.descriptions)) {
        const id = files.ids[token];
        if (id !== undefined && id < newRows) byId.set(id, tok.encode(text, { addSpecialTokens: false }));
      }
      descriptionInit(w, inputEmbed!, dim, byId, [...byId.keys()], spec.init === "desc_init_w_noise", rng);
    } else noisyMeanInit(w, dim, tail, rng);
    tensors[name] = { dtype: t.dtype, shape: [newRows, dim], data: w };
  }
  for (const [name, t] of folder.tensors) {
    if (!tensors[name]) tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: await folder.read(name) };
  }
  await writeSafetensors(`${out}/model.safetensors`, tensors, { format: "pt", ...folder.metadata });
  config.vocab_size = newRows;
  const text = config.text_config as Json | undefined;
  if (text && typeof text === "object" && "vocab_size" in text) config.text_config = { ...text, vocab_size: newRows };
  await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(config, null, 2) + "\n");
  return { ids: files.ids, added: files.added, oldRows, newRows, resized: newRows > oldRows ? resized : [] };
}
