/**
 * PEFT LoRA adapter folders: `adapter_config.json` + `adapter_model.safetensors`, read into a
 * {@link LoraConfig} and f32 tensors, and written so that `PeftModel.from_pretrained` loads them.
 *
 * Tensor keys are PEFT's: `base_model.model.<module>.lora_A.weight` [r, in], `.lora_B.weight` [out, r] and, for
 * DoRA, `.lora_magnitude_vector` [out]. Supported: LoRA, rsLoRA, DoRA, `target_modules` as a list or a regex,
 * `exclude_modules`, `layers_to_transform`, `target_parameters` (fused expert parameters), `init_lora_weights` true/false/"gaussian"/"pissa"/"pissa_niter_N".
 * `rank_pattern` / `alpha_pattern` only as PEFT's MoE conversion writes them (key `.*\.gate_up_proj`, see
 * {@link LoraConfig.gateUp}). Not supported (a clear error when set): `modules_to_save`, `bias` other than "none",
 * other `rank_pattern` / `alpha_pattern` keys, `fan_in_fan_out`, `lora_bias`, and other PEFT extensions that change the computation.
 * @module
 */
import { openSafetensors, type TensorData, writeSafetensors } from "./safetensors.ts";
import { exists, writeFileAtomic } from "../util/fs.ts";

/** PEFT's `init_lora_weights`. */
export type LoraInit = boolean | "gaussian" | "pissa" | `pissa_niter_${number}`;

/** A LoRA adapter's hyper-parameters (PEFT's LoraConfig, as far as Whetstone implements it). */
export interface LoraConfig {
  /** Rank. */
  r: number;
  /** lora_alpha. */
  alpha: number;
  /** Dropout on the LoRA path's input (training graphs only). */
  dropout: number;
  /**
   * Which linears: a list of names, each matching a module whose path is the name or ends with "." + name
   * (PEFT), "all" in the list (or the string "all" / "all-linear") for every linear except lm_head
   * (LLaMA-Factory's find_all_linear_modules); any other string is a regex fully matching the module path.
   */
  targets: readonly string[] | string;
  /**
   * PEFT's `target_parameters`: fused 3-D expert parameters (transformers 5's `mlp.experts.gate_up_proj`,
   * `mlp.experts.down_proj`), each matching a parameter whose path is the name or ends with "." + name
   * (engine/nn/lora_experts.ts). Not filtered by `exclude` or `layers`, as in PEFT.
   */
  targetParameters?: readonly string[];
  /**
   * Rank and alpha of the fused `gate_up_proj` adapter where they differ from r / alpha: PEFT's conversion of
   * `gate_proj` + `up_proj` targets onto transformers 5's fused experts doubles both (its rank_pattern /
   * alpha_pattern `.*\.gate_up_proj`; engine/nn/lora_moe_targets.ts).
   */
  gateUp?: { r: number; alpha: number };
  /** Modules left out, matched as `targets` (PEFT's exclude_modules). */
  exclude?: readonly string[] | string;
  /** Only these layer indices (PEFT's layers_to_transform). */
  layers?: readonly number[];
  /** rsLoRA: scale alpha / √r instead of alpha / r. */
  useRslora: boolean;
  /** DoRA (weight-decomposed LoRA). */
  useDora: boolean;
  /** Initialisation (PEFT's init_lora_weights); "pissa" / "pissa_niter_N" also rewrite the base weights. */
  init: LoraInit;
}

/** adapter_config.json. */
export const ADAPTER_CONFIG_FILE = "adapter_config.json";
/** adapter_model.safetensors. */
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/** One adapter tensor, widened to f32. */
export interface AdapterTensor {
  shape: number[];
  data: Float32Array;
}

/** A PEFT adapter folder, read. */
export interface PeftAdapter {
  dir: string;
  config: LoraConfig;
  /** `base_model_name_or_path` (may be empty). */
  baseModel: string;
  /** Tensors by PEFT key. */
  tensors: Map<string, AdapterTensor>;
  /** The raw adapter_config.json. */
  raw: Record<string, unknown>;
  /**
   * Whole base weights saved as PEFT's `modules_to_save` (`embed_tokens`, `lm_head`), by base parameter name
   * (`model.embed_tokens.weight`, `lm_head.weight`); not in `tensors`.
   */
  modulesToSave: Map<string, AdapterTensor>;
}

/** PEFT's saved names of the `modules_to_save` weights → the base parameter each replaces. */
export const MODULES_TO_SAVE_KEYS: Readonly<Record<string, string>> = {
  "base_model.model.model.embed_tokens.weight": "model.embed_tokens.weight",
  "base_model.model.lm_head.weight": "lm_head.weight",
};

const isEmpty = (v: unknown) =>
  v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && !Array.isArray(v) && Object.keys(v as object).length === 0);

/** Fields that change PEFT's computation and that Whetstone does not implement: each must be empty or off. */
const UNSUPPORTED = [
  "fan_in_fan_out",
  "lora_bias",
  "use_qalora",
  "use_bdlora",
  "layer_replication",
  "alora_invocation_tokens",
  "arrow_config",
  "trainable_token_indices",
  "monteclora_config",
  "kasa_config",
  "velora_config",
];

function parseInit(v: unknown, where: string): LoraInit {
  if (v === undefined || v === null || v === true) return true;
  if (v === false || v === "gaussian" || v === "pissa") return v;
  if (typeof v === "string" && /^pissa_niter_\d+$/.test(v)) return v as LoraInit;
  throw new Error(
    `${where}: init_lora_weights ${JSON.stringify(v)} is not supported (true, false, "gaussian", "pissa", ` +
      `"pissa_niter_<n>")`,
  );
}

function stringsOrRegex(v: unknown, key: string, where: string): string[] | string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((s) => typeof s === "string")) return [...v].sort();
  throw new Error(`${where}: ${key} must be a list of module names or a regex string, got ${JSON.stringify(v)}`);
}

/** PEFT's MoE-conversion key of rank_pattern / alpha_pattern (the only one Whetstone reads). */
export const GATE_UP_PATTERN = ".*\\.gate_up_proj";

/** rank_pattern / alpha_pattern: empty, or exactly PEFT's MoE-conversion entry for the fused gate_up_proj. */
function gateUpPattern(raw: Record<string, unknown>, where: string): { r: number; alpha: number } | undefined {
  const got: Record<string, number> = {};
  for (const k of ["rank_pattern", "alpha_pattern"]) {
    const v = raw[k];
    if (isEmpty(v)) continue;
    const keys = typeof v === "object" && !Array.isArray(v) ? Object.keys(v as object) : [];
    const n = (v as Record<string, unknown>)[GATE_UP_PATTERN];
    if (keys.length !== 1 || keys[0] !== GATE_UP_PATTERN || typeof n !== "number" || !(n > 0)) {
      throw new Error(
        `${where}: ${k} = ${JSON.stringify(v)} is not supported (only PEFT's MoE conversion ` +
          `{${JSON.stringify(GATE_UP_PATTERN)}: n} for the fused gate_up_proj is)`,
      );
    }
    got[k] = n;
  }
  if (!Object.keys(got).length) return undefined;
  const r = got.rank_pattern ?? (raw.r as number), alpha = got.alpha_pattern ?? ((raw.lora_alpha as number) ?? 8);
  if (!Number.isInteger(r)) throw new Error(`${where}: rank_pattern's rank must be an integer, got ${r}`);
  return { r, alpha };
}

/** The {@link LoraConfig} of a parsed adapter_config.json; throws on what Whetstone cannot reproduce. */
export function loraConfigFromPeft(raw: Record<string, unknown>, where = ADAPTER_CONFIG_FILE): LoraConfig {
  if (raw.peft_type !== "LORA") {
    throw new Error(`${where}: peft_type ${JSON.stringify(raw.peft_type)} is not supported (expected "LORA")`);
  }
  if (raw.task_type !== undefined && raw.task_type !== null && raw.task_type !== "CAUSAL_LM") {
    throw new Error(`${where}: task_type ${JSON.stringify(raw.task_type)} is not supported (expected "CAUSAL_LM")`);
  }
  if ((raw.bias ?? "none") !== "none") {
    throw new Error(`${where}: bias ${JSON.stringify(raw.bias)} is not supported (expected "none")`);
  }
  for (const k of UNSUPPORTED) {
    if (!isEmpty(raw[k])) throw new Error(`${where}: ${k} = ${JSON.stringify(raw[k])} is not supported`);
  }
  const gateUp = gateUpPattern(raw, where);
  const mts = raw.modules_to_save;
  if (!isEmpty(mts) && !(Array.isArray(mts) && mts.every((m) => m === "embed_tokens" || m === "lm_head"))) {
    throw new Error(
      `${where}: modules_to_save = ${JSON.stringify(mts)} is not supported (only embed_tokens and lm_head, as ` +
        "LLaMA-Factory's resize_vocab trains them)",
    );
  }
  const lp = raw.layers_pattern;
  if (!isEmpty(lp) && lp !== "layers" && !(Array.isArray(lp) && lp.length === 1 && lp[0] === "layers")) {
    throw new Error(`${where}: layers_pattern ${JSON.stringify(lp)} is not supported (null or "layers")`);
  }
  const r = raw.r;
  if (typeof r !== "number" || !Number.isInteger(r) || r < 1) {
    throw new Error(`${where}: r must be a positive integer, got ${JSON.stringify(r)}`);
  }
  const alpha = raw.lora_alpha ?? 8; // PEFT's default
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) {
    throw new Error(`${where}: lora_alpha must be a number, got ${JSON.stringify(alpha)}`);
  }
  const dropout = raw.lora_dropout ?? 0;
  if (typeof dropout !== "number" || !(dropout >= 0 && dropout < 1)) {
    throw new Error(`${where}: lora_dropout must be in [0, 1), got ${JSON.stringify(dropout)}`);
  }
  const tp = raw.target_parameters;
  if (tp !== undefined && tp !== null && !(Array.isArray(tp) && tp.every((t) => typeof t === "string"))) {
    throw new Error(`${where}: target_parameters must be a list of parameter names, got ${JSON.stringify(tp)}`);
  }
  const targetParameters = tp?.length ? [...tp as string[]].sort() : undefined;
  const targets = stringsOrRegex(raw.target_modules, "target_modules", where) ?? (targetParameters ? [] : undefined);
  if (targets === undefined) throw new Error(`${where}: target_modules is missing`);
  if (targetParameters && (dropout > 0 || raw.use_dora === true)) {
    throw new Error(`${where}: target_parameters cannot be combined with lora_dropout > 0 or use_dora (as in PEFT)`);
  }
  const ltt = raw.layers_to_transform;
  let layers: number[] | undefined;
  if (typeof ltt === "number") layers = [ltt];
  else if (Array.isArray(ltt) && ltt.every((x) => Number.isInteger(x))) layers = ltt as number[];
  else if (ltt !== undefined && ltt !== null) {
    throw new Error(`${where}: layers_to_transform must be an integer or a list of them, got ${JSON.stringify(ltt)}`);
  }
  return {
    r,
    alpha,
    dropout,
    targets,
    ...(targetParameters ? { targetParameters } : {}),
    ...(gateUp ? { gateUp } : {}),
    exclude: stringsOrRegex(raw.exclude_modules, "exclude_modules", where),
    layers,
    useRslora: raw.use_rslora === true,
    useDora: raw.use_dora === true,
    init: parseInit(raw.init_lora_weights, where),
  };
}

/** The adapter_config.json PEFT writes for `cfg` (the fields every PEFT since 0.10 understands). */
export function peftConfigJson(cfg: LoraConfig, baseModel: string): Record<string, unknown> {
  type Names = readonly string[] | string | undefined;
  const list = (v: Names) => (v === undefined ? null : typeof v === "string" ? v : [...v].sort());
  const out: Record<string, unknown> = {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: cfg.init,
    layer_replication: null,
    layers_pattern: null,
    layers_to_transform: cfg.layers ? [...cfg.layers] : null,
    loftq_config: {},
    lora_alpha: cfg.alpha,
    lora_dropout: cfg.dropout,
    megatron_config: null,
    megatron_core: "megatron.core",
    modules_to_save: null,
    peft_type: "LORA",
    r: cfg.r,
    rank_pattern: {},
    revision: null,
    target_modules: list(cfg.targets),
    task_type: "CAUSAL_LM",
    use_dora: cfg.useDora,
    use_rslora: cfg.useRslora,
  };
  if (cfg.gateUp) {
    out.rank_pattern = { [GATE_UP_PATTERN]: cfg.gateUp.r };
    out.alpha_pattern = { [GATE_UP_PATTERN]: cfg.gateUp.alpha };
  }
  if (cfg.targetParameters?.length) out.target_parameters = [...cfg.targetParameters].sort(); // PEFT >= 0.17 only
  if (cfg.exclude !== undefined) out.exclude_modules = list(cfg.exclude); // PEFT >= 0.14 only
  return out;
}

/** Reads an adapter folder: config (validated) and every tensor as f32. */
export async function readPeftAdapter(dir: string): Promise<PeftAdapter> {
  const cfgPath = `${dir}/${ADAPTER_CONFIG_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(cfgPath);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${dir}: not a PEFT adapter folder (no ${ADAPTER_CONFIG_FILE})`);
    }
    throw e;
  }
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new Error(`${cfgPath}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new Error(`${cfgPath}: expected a JSON object`);
  }
  const config = loraConfigFromPeft(raw, cfgPath);
  const wPath = `${dir}/${ADAPTER_WEIGHTS_FILE}`;
  try {
    await Deno.stat(wPath);
  } catch {
    const bin = await exists(`${dir}/adapter_model.bin`);
    throw new Error(
      `${dir}: no ${ADAPTER_WEIGHTS_FILE}` +
        (bin ? " (adapter_model.bin is a pickle; re-save it with safe_serialization=True)" : ""),
    );
  }
  const f = await openSafetensors(wPath);
  const tensors = new Map<string, AdapterTensor>(), modulesToSave = new Map<string, AdapterTensor>();
  try {
    for (const [name, t] of f.tensors) {
      if (!["F32", "F16", "BF16", "F64"].includes(t.dtype)) {
        throw new Error(`${wPath}: tensor "${name}" has dtype ${t.dtype}; expected a float dtype`);
      }
      const base = MODULES_TO_SAVE_KEYS[name];
      (base ? modulesToSave : tensors).set(base ?? name, { shape: [...t.shape], data: await f.readF32(name) });
    }
  } finally {
    f.close();
  }
  const baseModel = typeof raw.base_model_name_or_path === "string" ? raw.base_model_name_or_path : "";
  return { dir, config, baseModel, tensors, raw, modulesToSave };
}

/**
 * Writes an adapter folder PEFT loads: adapter_config.json and adapter_model.safetensors (F32), each atomically
 * (a temp file renamed over the target). The folder is created if missing.
 */
export async function writePeftAdapter(
  dir: string,
  adapter: {
    config: LoraConfig;
    tensors: ReadonlyMap<string, AdapterTensor>;
    baseModel?: string;
    /** Whole base weights by base name (`model.embed_tokens.weight`, `lm_head.weight`): PEFT's modules_to_save. */
    modulesToSave?: ReadonlyMap<string, AdapterTensor>;
  },
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const rec: Record<string, TensorData> = {};
  for (const [name, t] of adapter.tensors) rec[name] = { dtype: "F32", shape: t.shape, data: t.data };
  const peftName = Object.fromEntries(Object.entries(MODULES_TO_SAVE_KEYS).map(([k, v]) => [v, k]));
  for (const [name, t] of adapter.modulesToSave ?? []) {
    if (!peftName[name]) throw new Error(`writePeftAdapter: ${name} is not a modules_to_save weight`);
    rec[peftName[name]] = { dtype: "F32", shape: t.shape, data: t.data };
  }
  await writeSafetensors(`${dir}/${ADAPTER_WEIGHTS_FILE}`, rec, { format: "pt" });
  const cfg = peftConfigJson(adapter.config, adapter.baseModel ?? "");
  if (adapter.modulesToSave?.size) cfg.modules_to_save = ["embed_tokens", "lm_head"];
  const json = JSON.stringify(cfg, null, 2) + "\n";
  await writeFileAtomic(`${dir}/${ADAPTER_CONFIG_FILE}`, json);
}
