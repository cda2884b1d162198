/**
 * The training form's values and the config they make, without the page: LlamaBoard's defaults, the YAML keys
 * whose value differs from LLaMA-Factory's default (the key table, GET /board/keys.json) plus the keys LlamaBoard
 * always writes, and the reverse (a config read into the form). Plain functions (board/form_config_test.ts).
 * @module
 */

/**
 * @typedef {{ def: unknown, kind: string, choices?: readonly string[] }} KeySpec
 * @typedef {Record<string, string | boolean | string[]>} FormValues
 */

/** A timestamp for output folders, as LlamaBoard names them (train_YYYY-MM-DD-HH-MM-SS). */
export function stamp(d = new Date()) {
  const p = (/** @type {number} */ n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}-${p(d.getMinutes())}-${
    p(d.getSeconds())
  }`;
}

/**
 * The form's fields in YAML order, with LlamaBoard's defaults (numbers as the text of their inputs; "" is unset).
 * @returns {FormValues}
 */
export function defaultValues() {
  return {
    model_name_or_path: "",
    adapter_name_or_path: "",
    finetuning_type: "lora",
    quantization_bit: "",
    quantization_method: "bnb",
    quantization_type: "nf4",
    double_quantization: true,
    template: "",
    executor: "auto",
    stage: "sft",
    dataset_dir: "data",
    dataset: [],
    cutoff_len: "2048",
    max_samples: "100000",
    packing: false,
    neat_packing: false,
    train_on_prompt: false,
    mask_history: false,
    val_size: "0",
    output_dir: `saves/train_${stamp()}`,
    learning_rate: "5e-5",
    num_train_epochs: "3.0",
    max_steps: "",
    per_device_train_batch_size: "2",
    gradient_accumulation_steps: "8",
    lr_scheduler_type: "cosine",
    warmup_ratio: "0",
    warmup_steps: "0",
    max_grad_norm: "1.0",
    optim: "adamw",
    logging_steps: "5",
    save_steps: "100",
    eval_steps: "",
    plot_loss: true,
    bf16: false,
    fp16: false,
    lora_rank: "8",
    lora_alpha: "",
    lora_dropout: "0",
    lora_target: "all",
    additional_target: "",
    loraplus_lr_ratio: "",
    use_rslora: false,
    use_dora: false,
    pissa_init: false,
    create_new_adapter: false,
    pref_beta: "0.1",
    pref_ftx: "0",
    pref_loss: "sigmoid",
    ref_model: "",
    reward_model: "",
    freeze_trainable_layers: "2",
    freeze_trainable_modules: "all",
    freeze_extra_modules: "",
    use_galore: false,
    galore_rank: "16",
    galore_update_interval: "200",
    galore_scale: "2",
    galore_target: "all",
    galore_proj_type: "std",
    use_badam: false,
    badam_mode: "layer",
    badam_switch_mode: "ascending",
    badam_switch_interval: "50",
    badam_start_block: "",
  };
}

/** The keys LlamaBoard writes whatever their value. */
const REQUIRED = new Set(["stage", "model_name_or_path", "finetuning_type", "template", "dataset", "output_dir"]);

const LORA = /^(lora_|loraplus_|use_rslora|use_dora|pissa_init|create_new_adapter|additional_target)/;
const PREF = new Set(["pref_beta", "pref_ftx", "pref_loss", "ref_model"]);

/**
 * Whether a field takes part in the config, given the others (LoRA keys with LoRA, preference keys with dpo/kto, ...).
 * @param {string} k
 * @param {FormValues} v
 */
function applies(k, v) {
  if (LORA.test(k)) return v.finetuning_type === "lora";
  if (k.startsWith("freeze_")) return v.finetuning_type === "freeze";
  if (PREF.has(k)) return v.stage === "dpo" || v.stage === "kto";
  if (k === "reward_model") return v.stage === "ppo";
  if (k.startsWith("galore_")) return v.use_galore === true;
  if (k.startsWith("badam_")) return v.use_badam === true;
  if (k.startsWith("quantization_") && k !== "quantization_bit" || k === "double_quantization") {
    return v.quantization_bit !== "";
  }
  return true;
}

/**
 * A field's value as the YAML holds it: undefined when unset; text that is not a number stays text (the server's
 * parser then names the key).
 * @param {string | boolean | string[]} raw
 * @param {KeySpec} spec
 * @returns {unknown}
 */
export function yamlValue(raw, spec) {
  if (typeof raw === "boolean") return raw;
  if (Array.isArray(raw)) return raw.length ? raw.join(",") : undefined;
  const s = raw.trim();
  if (s === "") return undefined;
  if (spec.kind === "int" || spec.kind === "num") {
    const n = Number(s);
    return Number.isFinite(n) ? n : s;
  }
  return s;
}

/**
 * The training config of the form: LlamaBoard's keys that differ from LF's defaults, the required ones, and the
 * keys a loaded YAML had that the form has no field for.
 * @param {FormValues} values
 * @param {Record<string, unknown>} extra
 * @param {Record<string, KeySpec>} keys
 * @returns {Record<string, unknown>}
 */
export function toConfig(values, extra, keys) {
  /** @type {Record<string, unknown>} */
  const out = {};
  for (const [k, raw] of Object.entries(values)) {
    const spec = keys[k];
    if (!spec || !applies(k, values)) continue;
    const v = yamlValue(raw, spec);
    // packing's default (null) means "on for pt" in LF.
    const def = k === "packing" ? values.stage === "pt" : spec.def;
    if (v === undefined || (!REQUIRED.has(k) && v === def)) continue;
    out[k] = v;
    if (k === "stage") out.do_train = true;
  }
  const val = Number(values.val_size);
  if (Number.isFinite(val) && val > 0 && values.stage !== "ppo") {
    out.eval_strategy = "steps";
    out.eval_steps = out.eval_steps ?? out.save_steps ?? keys.save_steps?.def;
    out.per_device_eval_batch_size = out.per_device_train_batch_size ?? keys.per_device_eval_batch_size?.def;
  }
  for (const [k, v] of Object.entries(extra)) if (!(k in out) && !(k in values)) out[k] = v;
  return out;
}

/**
 * The form read from a config object (a YAML's keys, or a session's config).
 * @param {Record<string, unknown>} cfg
 * @returns {{ values: FormValues, extra: Record<string, unknown> }}
 */
export function fromConfig(cfg) {
  const values = defaultValues();
  /** @type {Record<string, unknown>} */
  const extra = {};
  // LlamaBoard's defaults stand only where LF's default would differ: a YAML without a key means LF's default.
  for (const k of Object.keys(values)) {
    if (k in cfg || REQUIRED.has(k)) continue;
    const d = DEFAULTS_WHEN_ABSENT[k];
    if (d !== undefined) values[k] = d;
  }
  for (const [k, v] of Object.entries(cfg)) {
    if (k === "do_train" || k === "config") continue;
    if (!(k in values)) {
      extra[k] = v;
      continue;
    }
    const cur = values[k];
    if (Array.isArray(cur)) {
      values[k] = (Array.isArray(v) ? v.map(String) : String(v ?? "").split(","))
        .map((s) => s.trim()).filter(Boolean);
    } else if (typeof cur === "boolean") values[k] = v === true || v === "true";
    else values[k] = v === null || v === undefined ? "" : Array.isArray(v) ? v.join(",") : String(v);
  }
  if (!("packing" in cfg)) values.packing = values.stage === "pt";
  return { values, extra };
}

/** The field text meaning LF's default, for fields whose LlamaBoard default differs from it. */
const DEFAULTS_WHEN_ABSENT = /** @type {Record<string, string | boolean>} */ ({
  max_samples: "",
  cutoff_len: "2048",
  per_device_train_batch_size: "8",
  gradient_accumulation_steps: "1",
  lr_scheduler_type: "linear",
  logging_steps: "500",
  save_steps: "500",
  plot_loss: false,
});
