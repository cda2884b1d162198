/**
 * The cross-field rules of LLaMA-Factory's `get_train_args` and HF `TrainingArguments.__post_init__` that need no
 * file system ({@linkcode crossCheck}, called by `parseTrainArgs`), LF's output_dir / resume rule
 * ({@linkcode checkOutputDir}, which reads output_dir), and the warmup / interval step counts.
 * Messages keep LF's and HF's wording after the key they concern.
 * @module
 */
import { isDir, isFile } from "../util/fs.ts";
import { parseProbs } from "../data/mix.ts";
import { resolveDataArgs } from "../data/process.ts";
import { TEMPLATES } from "../data/template.ts";
import { TOOL_UTILS } from "../data/template_tools.ts";
import { closeNames } from "../data/dataset_info.ts";
import { checkDeepSpeed } from "./deepspeed.ts";
import { ConfigError, type TrainArgs } from "./train_args.ts";
import { parseOptimArgs, sgdArgsOf } from "./optim_args.ts";
import { SCHEDULER_TYPES, schedulerKwargsProblems, type SchedulerType } from "./schedulers.ts";
import { dataArgsOf } from "./views.ts";
import { checkMethods } from "./rules_methods.ts";

/** Trackers Whetstone writes to (engine/train/trackers.ts). */
const TRACKERS = ["tensorboard"];

/** `report_to`: "none" alone, or tracker names; the ones Whetstone does not write get a note (docs/inert_keys.md). */
function reportTo(a: TrainArgs, warnings: string[]): void {
  const names = (a.report_to ?? []).filter((n) => n !== "none");
  if (names.length && names.length < (a.report_to ?? []).length) {
    warnings.push(`report_to: "none" with other trackers (${names.join(", ")}); "none" is dropped`);
  }
  if (names.includes("all")) {
    warnings.push('report_to: "all" writes the one tracker Whetstone has, tensorboard (event files under logging_dir)');
  }
  const inert = names.filter((n) => n !== "all" && !TRACKERS.includes(n));
  if (inert.length) {
    warnings.push(
      `report_to: Whetstone does not write to ${inert.join(", ")} (trainer_log.jsonl and trainer_state.json hold the ` +
        "same logs; tensorboard writes event files); see docs/inert_keys.md",
    );
  }
}

/** HF's `metric_for_best_model` / `greater_is_better` defaults and load_best_model_at_end rules; LF's early stopping. */
function bestModel(a: TrainArgs, err: (key: string, msg: string) => void): void {
  if (a.load_best_model_at_end && a.metric_for_best_model === null) a.metric_for_best_model = "loss";
  if (a.greater_is_better === null && a.metric_for_best_model !== null) {
    a.greater_is_better = !a.metric_for_best_model.endsWith("loss");
  }
  if (a.load_best_model_at_end && a.eval_strategy !== a.save_strategy) {
    err(
      "load_best_model_at_end",
      `--load_best_model_at_end requires the save and eval strategy to match, but found - Evaluation strategy: ` +
        `${a.eval_strategy} - Save strategy: ${a.save_strategy}`,
    );
  }
  const evalSteps = a.eval_steps ?? a.logging_steps;
  if (a.load_best_model_at_end && a.eval_strategy === "steps" && a.save_steps % evalSteps !== 0) {
    if (evalSteps < 1 || a.save_steps < 1) {
      if (!(evalSteps < 1 && a.save_steps < 1) || Math.round(a.save_steps * 1e6) % Math.round(evalSteps * 1e6) !== 0) {
        err(
          "load_best_model_at_end",
          "--load_best_model_at_end requires the saving steps to be a multiple of the evaluation steps, but found " +
            `${a.save_steps}, which is not a multiple of ${evalSteps}.`,
        );
      }
    } else {
      err(
        "load_best_model_at_end",
        "--load_best_model_at_end requires the saving steps to be a round multiple of the evaluation steps, but " +
          `found ${a.save_steps}, which is not a round multiple of ${evalSteps}.`,
      );
    }
  }
  if (a.early_stopping_steps !== null) {
    if (a.metric_for_best_model === null) {
      err("early_stopping_steps", "EarlyStoppingCallback requires metric_for_best_model to be defined");
    }
    if (a.eval_strategy === "no") {
      err("early_stopping_steps", "EarlyStoppingCallback requires IntervalStrategy of steps or epoch");
    }
  }
  if (a.eval_on_start && !a.val_size && !a.eval_dataset) {
    err("eval_on_start", "an evaluation before training needs an evaluation set (val_size or eval_dataset)");
  }
}

function checkSteps(key: string, value: number | null, problems: string[]): void {
  if (value !== null && value > 1 && !Number.isInteger(value)) {
    problems.push(`${key}: --${key} must be an integer if bigger than 1: ${value}`);
  }
}

/**
 * Applies the rules that relate keys (in place: `lora_alpha`, `do_eval`, `eval_steps` are derived) and adds the
 * problems and notes. `given` holds the keys the config set.
 */
export function crossCheck(a: TrainArgs, given: ReadonlySet<string>, problems: string[], warnings: string[]): void {
  const err = (key: string, msg: string) => problems.push(`${key}: ${msg}`);
  // model
  if (!a.model_name_or_path) err("model_name_or_path", "required (a local HF model folder or a hub model id)");
  if (a.adapter_name_or_path && a.finetuning_type !== "lora" && a.finetuning_type !== "oft") {
    err("adapter_name_or_path", "Adapter is only valid for the LoRA method.");
  }
  // method
  a.lora_alpha = a.lora_alpha || a.lora_rank * 2;
  if (a.finetuning_type !== "lora") {
    for (const key of ["loraplus_lr_ratio", "use_rslora", "use_dora", "pissa_init"] as const) {
      if (a[key]) err(key, `\`${key}\` is only valid for LoRA training.`);
    }
  }
  // QLoRA, GaLore, BAdam (FinetuningArguments.__post_init__, get_train_args)
  if (a.quantization_bit !== null) {
    if (a.quantization_bit !== 4 && a.quantization_bit !== 8) {
      err("quantization_bit", `expected 4 or 8 (bitsandbytes), got ${a.quantization_bit}`);
    }
    if (a.finetuning_type !== "lora" && a.finetuning_type !== "oft") {
      err("quantization_bit", "Quantization is only compatible with the LoRA or OFT method.");
    }
    if (a.pissa_init) err("pissa_init", "Please use scripts/pissa_init.py to initialize PiSSA for a quantized model.");
    if (a.resize_vocab) err("resize_vocab", "Cannot resize embedding layers of a quantized model.");
    if ((a.adapter_name_or_path?.length ?? 0) > 1) {
      err("adapter_name_or_path", "Quantized model only accepts a single adapter. Merge them first.");
    }
  }
  const lowRank = a.use_galore ? "use_galore" : a.use_apollo ? "use_apollo" : undefined;
  if (a.finetuning_type === "lora" && (lowRank || a.use_badam)) {
    err(lowRank ?? "use_badam", "Cannot use LoRA with GaLore, APOLLO or BAdam together.");
  }
  if ([a.use_galore, a.use_apollo, a.use_badam].filter(Boolean).length > 1) {
    err(a.use_badam ? "use_badam" : "use_apollo", "Cannot use GaLore, APOLLO or BAdam together.");
  }
  if (lowRank && a.optim !== "adamw") {
    err("optim", `${lowRank === "use_galore" ? "GaLore" : "APOLLO"} runs with optim adamw_torch here, got ${a.optim}`);
  }
  if (a.use_badam && a.optim !== "adamw") err("optim", `BAdam runs with optim adamw_torch here, got ${a.optim}`);
  for (
    const [on, key, name] of [[a.use_galore, "galore_layerwise", "GaLore"], [
      a.use_apollo,
      "apollo_layerwise",
      "APOLLO",
    ]] as const
  ) {
    if (!on || !a[key]) continue;
    // LF's _create_galore_optimizer / _create_apollo_optimizer
    if (a.gradient_accumulation_steps !== 1) {
      err("gradient_accumulation_steps", `Per-layer ${name} does not support gradient accumulation.`);
    }
    if (a.max_grad_norm > 0) {
      warnings.push(`${key}: each param steps before clipping (LF's hooks), so max_grad_norm has no effect`);
    }
  }
  if (a.optim === "sgd" || a.optim_args) {
    try {
      if (a.optim === "sgd") sgdArgsOf(a.optim_args);
      else parseOptimArgs(a.optim_args);
    } catch (e) {
      err("optim_args", (e as Error).message);
    }
  }
  if (a.optim_args && a.optim !== "sgd") warnings.push(`optim_args: optim ${a.optim} reads nothing from it; ignored`);
  for (const key of ["use_adam_mini", "use_muon"] as const) {
    if (!a[key]) continue;
    // LF's create_custom_optimizer tries GaLore, APOLLO, LoRA+, BAdam, then Adam-mini, then Muon.
    const first = lowRank
      ? lowRank
      : a.loraplus_lr_ratio
      ? "loraplus_lr_ratio"
      : a.use_badam
      ? "use_badam"
      : key === "use_muon" && a.use_adam_mini
      ? "use_adam_mini"
      : "";
    if (first) warnings.push(`${key}: ignored, as in LLaMA-Factory, which builds the ${first} optimizer first`);
    else if (a.optim !== "adamw") warnings.push(`${key}: it replaces optim ${a.optim} (as in LLaMA-Factory)`);
  }
  if (a.use_badam && a.badam_mode === "ratio" && a.max_grad_norm > 0) {
    warnings.push(
      "max_grad_norm: BAdam's ratio mode clips detached copies of its sparse gradients (clip_grad_norm_old_version), " +
        "so the gradients are not clipped; the norm is logged",
    );
  }
  if (a.use_badam && a.finetuning_type !== "full") {
    err("use_badam", `BAdam selects its own trainable blocks: expected finetuning_type full, got ${a.finetuning_type}`);
  }
  for (const key of ["use_galore", "use_apollo", "use_badam"] as const) {
    if (a[key] && a.stage === "ppo") {
      err(key, "supported for stages pt, sft, rm, dpo and kto in Whetstone, got stage ppo");
    }
  }
  checkMethods(a, err, given, warnings);
  reportTo(a, warnings);
  bestModel(a, err);
  if (a.predict_with_generate && a.compute_accuracy) {
    err("compute_accuracy", "Cannot use `predict_with_generate` and `compute_accuracy` together.");
  }
  if (a.use_dft_loss && a.stage !== "sft") {
    warnings.push(`use_dft_loss: LF's DFT loss replaces the loss of stage sft only; stage ${a.stage} ignores it`);
  }
  // stages (FinetuningArguments.__post_init__, get_train_args)
  if (a.stage === "dpo" && a.pref_loss !== "sigmoid" && a.dpo_label_smoothing > 1e-6) {
    err("dpo_label_smoothing", "`dpo_label_smoothing` is only valid for sigmoid loss function.");
  }
  if (a.stage === "ppo") {
    if (!a.reward_model) err("reward_model", "`reward_model` is necessary for PPO training.");
    if (a.reward_model_type === "lora" && a.finetuning_type !== "lora") {
      err("reward_model_type", "`reward_model_type` cannot be lora for Freeze/Full PPO training.");
    }
    if (given.has("do_train") && !a.do_train) {
      err("do_train", "PPO training does not support evaluation, use the SFT stage to evaluate models.");
    }
  }
  if ((a.ref_model_adapters?.length ?? 0) > 0 && !a.ref_model) {
    err("ref_model_adapters", "expected ref_model (the model the adapters go on), got none");
  }
  if ((a.reward_model_adapters?.length ?? 0) > 0 && !a.reward_model) {
    err("reward_model_adapters", "expected reward_model (the model the adapters go on), got none");
  }
  // precision
  if (a.fp16 && a.bf16) err("fp16", "At most one of fp16 and bf16 can be True, but not both");
  // fp16 computes in f16 where the step has an f16 path (the run logs which: engine/train/step/precision.ts).
  if (a.bf16) warnings.push("bf16: Whetstone trains in f32 (f32 master weights and compute); ignored");
  if (!a.output_dir) err("output_dir", "expected a folder path, got an empty string");
  // schedule
  if (a.warmup_steps >= 1 && !Number.isInteger(a.warmup_steps)) {
    err("warmup_steps", `expected an integer count, or a ratio below 1, got ${a.warmup_steps}`);
  }
  if (a.warmup_steps > 0 && a.warmup_ratio > 0) {
    warnings.push(
      "warmup_steps: Both warmup_ratio and warmup_steps given, warmup_steps will override any effect of warmup_ratio" +
        " during training",
    );
  }
  if ((SCHEDULER_TYPES as readonly string[]).includes(a.lr_scheduler_type)) {
    const kw = a.lr_scheduler_kwargs as Record<string, unknown>;
    for (const p of schedulerKwargsProblems(a.lr_scheduler_type as SchedulerType, kw)) err("lr_scheduler_kwargs", p);
  }
  if (a.lr_scheduler_type === "reduce_lr_on_plateau" && a.eval_strategy === "no") {
    warnings.push("lr_scheduler_type: reduce_lr_on_plateau steps on evaluations; with eval_strategy no the lr stays");
  }
  if (a.lr_scheduler_type === "cosine_with_min_lr" || a.lr_scheduler_type === "cosine_warmup_with_min_lr") {
    const { min_lr: lr, min_lr_rate: rate } = a.lr_scheduler_kwargs;
    if (lr !== undefined && rate !== undefined) {
      err("lr_scheduler_kwargs", "Only one of min_lr or min_lr_rate should be set");
    } else if (lr === undefined && rate === undefined) {
      err("lr_scheduler_kwargs", "One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`");
    }
  }
  // logging / eval / save intervals (HF __post_init__)
  if (a.eval_strategy !== "no") a.do_eval = true;
  if (a.logging_strategy === "steps" && a.logging_steps === 0) {
    err("logging_steps", "logging strategy steps requires non-zero --logging_steps");
  }
  if (a.eval_strategy === "steps" && !a.eval_steps) {
    if (a.logging_steps > 0) a.eval_steps = a.logging_steps;
    else err("eval_steps", "evaluation strategy steps requires either non-zero --eval_steps or --logging_steps");
  }
  if (a.save_strategy === "steps" && a.save_steps === 0) {
    err("save_steps", "save strategy steps requires non-zero --save_steps");
  }
  if (a.logging_strategy === "steps") checkSteps("logging_steps", a.logging_steps, problems);
  if (a.eval_strategy === "steps") checkSteps("eval_steps", a.eval_steps, problems);
  if (a.save_strategy === "steps") checkSteps("save_steps", a.save_steps, problems);
  // data (DataArguments.__post_init__)
  const hasVal = a.val_size > 1e-6;
  if (a.val_size >= 1 && !Number.isInteger(a.val_size)) {
    err("val_size", `expected a fraction in [0, 1) or an integer count, got ${a.val_size}`);
  }
  if (!a.dataset && hasVal) err("val_size", "Cannot specify `val_size` if `dataset` is None.");
  if (a.eval_dataset && hasVal) err("val_size", "Cannot specify `val_size` if `eval_dataset` is not None.");
  if (a.interleave_probs) {
    const probs = a.interleave_probs;
    if (a.mix_strategy === "concat") {
      err("interleave_probs", "`interleave_probs` is only valid for interleaved mixing.");
    } else if (a.dataset && a.dataset.length !== probs.length) {
      err("interleave_probs", "The length of dataset and interleave probs should be identical.");
    } else if (a.eval_dataset && a.eval_dataset.length !== probs.length) {
      err("interleave_probs", "The length of eval dataset and interleave probs should be identical.");
    } else {
      try {
        parseProbs(probs, probs.length, warnings);
      } catch (e) {
        err("interleave_probs", (e as Error).message);
      }
    }
  }
  try {
    resolveDataArgs(dataArgsOf(a));
  } catch (e) {
    problems.push((e as Error).message);
  }
  if (a.template !== null && !TEMPLATES.has(a.template)) {
    const close = closeNames(a.template, TEMPLATES.keys(), 3);
    err(
      "template",
      `Template ${a.template} does not exist.${close.length ? ` Did you mean ${close.join(", ")}?` : ""}`,
    );
  }
  if (a.tool_format !== null && !Object.hasOwn(TOOL_UTILS, a.tool_format)) {
    err("tool_format", `expected one of ${Object.keys(TOOL_UTILS).join(", ")}, got ${JSON.stringify(a.tool_format)}`);
  }
  // get_train_args
  if (a.do_train && !a.dataset) err("dataset", "Please specify dataset for training.");
  if (a.do_eval && !a.eval_dataset && !hasVal) {
    err(given.has("do_eval") ? "do_eval" : "eval_strategy", "Please specify dataset for evaluation.");
  }
}

/** What {@linkcode checkOutputDir} found. */
export interface OutputDirCheck {
  /** The checkpoint folder to resume from, or null to start afresh. */
  resumeFrom: string | null;
  /** LF's info lines ("Resuming training from ..."). */
  notes: string[];
}

/** LF's `CHECKPOINT_NAMES`: weight files whose presence (without checkpoint-N folders) blocks a new run. */
const CHECKPOINT_NAMES = [
  "adapter_model.safetensors",
  "adapter_model.bin",
  "model.safetensors.index.json",
  "model.safetensors",
  "pytorch_model.bin.index.json",
  "pytorch_model.bin",
];

/** HF's `get_last_checkpoint`: the `checkpoint-N` folder of `dir` with the largest N, or null. */
export async function lastCheckpoint(dir: string): Promise<string | null> {
  let best: [number, string] | null = null;
  for await (const e of Deno.readDir(dir)) {
    const m = /^checkpoint-(\d+)$/.exec(e.name);
    if (m && e.isDirectory && (!best || Number(m[1]) > best[0])) best = [Number(m[1]), e.name];
  }
  return best ? `${dir.replace(/\/+$/, "")}/${best[1]}` : null;
}

/**
 * LF's output_dir rule and HF's resume semantics. `resume_from_checkpoint` a path: that folder (it must exist);
 * `true`: the last `checkpoint-N` of output_dir (an error without one); `false`: start afresh. Unset, with
 * `do_train` and without `overwrite_output_dir`: an existing output_dir with checkpoints resumes from the last one;
 * one with weight files but no checkpoint is an error ("Output directory already exists and is not empty. Please
 * set `overwrite_output_dir`."); other files (logs) do not block, as in LF. A checkpoint saved with `save_only_model`
 * (no optimizer states) cannot be resumed from (HF's rule). Errors are {@linkcode ConfigError}s. Also reads the
 * `deepspeed` config, if any, and adds its note to `a.warnings` (config/deepspeed.ts).
 */
export async function checkOutputDir(a: TrainArgs, where = "<config>"): Promise<OutputDirCheck> {
  if (a.deepspeed) {
    const note = await checkDeepSpeed(a.deepspeed, where);
    if (!a.warnings.includes(note)) a.warnings.push(note);
  }
  const found = await findResume(a, where);
  const dir = found.resumeFrom;
  if (dir && !await isFile(`${dir}/${OPTIMIZER_FILE}`) && await isFile(`${dir}/trainer_state.json`)) {
    throw new ConfigError(where, [
      `resume_from_checkpoint: ${dir} holds only the model (saved with save_only_model: true), so training cannot ` +
      "resume from it; set resume_from_checkpoint: false or overwrite_output_dir: true to start afresh",
    ]);
  }
  return found;
}

/** The optimizer states of a checkpoint (not written with `save_only_model`). */
const OPTIMIZER_FILE = "optimizer.safetensors";

async function findResume(a: TrainArgs, where: string): Promise<OutputDirCheck> {
  const r = a.resume_from_checkpoint;
  const fail = (msg: string) => {
    throw new ConfigError(where, [msg]);
  };
  if (typeof r === "string") {
    if (!await isDir(r)) fail(`resume_from_checkpoint: Can't find a valid checkpoint at ${r}`);
    return { resumeFrom: r, notes: [] };
  }
  if (r === true) {
    const last = await isDir(a.output_dir) ? await lastCheckpoint(a.output_dir) : null;
    if (!last) fail(`resume_from_checkpoint: No valid checkpoint found in output directory (${a.output_dir})`);
    return { resumeFrom: last, notes: [`Resuming training from ${last}.`] };
  }
  if (r === false || !a.do_train || a.overwrite_output_dir || !await isDir(a.output_dir)) {
    return { resumeFrom: null, notes: [] };
  }
  const last = await lastCheckpoint(a.output_dir);
  if (last) {
    return {
      resumeFrom: last,
      notes: [`Resuming training from ${last}.`, "Change `output_dir` or use `overwrite_output_dir` to avoid."],
    };
  }
  for (const name of CHECKPOINT_NAMES) {
    try {
      if ((await Deno.stat(`${a.output_dir}/${name}`)).isFile) {
        fail(
          `output_dir ${a.output_dir}: Output directory already exists and is not empty. ` +
            "Please set `overwrite_output_dir`.",
        );
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return { resumeFrom: null, notes: [] };
}

/**
 * HF's warmup length: `warmup_steps` when >= 1; a `warmup_steps` below 1 is a ratio (transformers 5); otherwise
 * `ceil(total * warmup_ratio)`.
 */
export function warmupSteps(a: Pick<TrainArgs, "warmup_steps" | "warmup_ratio">, totalSteps: number): number {
  if (a.warmup_steps >= 1) return a.warmup_steps;
  return Math.ceil(totalSteps * (a.warmup_steps > 0 ? a.warmup_steps : a.warmup_ratio));
}
