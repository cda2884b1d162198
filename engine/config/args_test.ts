import assert from "node:assert/strict";
import { resolveDataArgs } from "../data/process.ts";
import {
  checkOutputDir,
  ConfigError,
  dataArgsOf,
  loadDatasetsArgsOf,
  loadTrainConfig,
  parseTrainArgs,
  resolveSteps,
  splitTrainCommand,
  type TrainArgs,
  warmupSteps,
} from "./args.ts";
import { KEYS } from "./keys.ts";

const CONFIGS = new URL("../../fixtures/configs/", import.meta.url).pathname;
const M = "model_name_or_path: some/model\n";

/** Parses `text` expecting failure; returns the message. */
function fails(text: string | Record<string, unknown>, overrides: string[] = [], where = "t.yaml"): string {
  try {
    parseTrainArgs(text, overrides, where);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e.message;
  }
  throw new assert.AssertionError({ message: `expected ${JSON.stringify(text)} to fail` });
}

Deno.test("LF example qwen3_lora_sft.yaml parses unchanged", async () => {
  const a = await loadTrainConfig(`${CONFIGS}qwen3_lora_sft.yaml`);
  assert.equal(a.model_name_or_path, "Qwen/Qwen3-4B-Instruct-2507");
  assert.equal(a.stage, "sft");
  assert.equal(a.do_train, true);
  assert.equal(a.finetuning_type, "lora");
  assert.equal(a.lora_rank, 8);
  assert.equal(a.lora_alpha, 16);
  assert.equal(a.lora_target, "all");
  assert.deepEqual(a.dataset, ["identity", "alpaca_en_demo"]);
  assert.equal(a.template, "qwen3_nothink");
  assert.equal(a.cutoff_len, 2048);
  assert.equal(a.max_samples, 1000);
  assert.equal(a.output_dir, "saves/qwen3-4b/lora/sft");
  assert.equal(a.logging_steps, 10);
  assert.equal(a.save_steps, 500);
  assert.equal(a.plot_loss, true);
  assert.equal(a.overwrite_output_dir, true);
  assert.equal(a.per_device_train_batch_size, 1);
  assert.equal(a.gradient_accumulation_steps, 8);
  assert.equal(a.learning_rate, 1e-4);
  assert.equal(a.num_train_epochs, 3);
  assert.equal(a.lr_scheduler_type, "cosine");
  assert.equal(a.warmup_ratio, 0.1);
  assert.equal(a.bf16, true);
  assert.equal(a.resume_from_checkpoint, null);
  assert.equal(a.do_eval, false);
  // trust_remote_code, preprocessing_num_workers, dataloader_num_workers, report_to: none, ddp_timeout: silent.
  assert.deepEqual(a.warnings, ["bf16: Whetstone trains in f32 (f32 master weights and compute); ignored"]);
});

Deno.test("LF examples: pretrain, LoRA+, PiSSA parse; their eval sections take effect", async () => {
  const pt = await loadTrainConfig(`${CONFIGS}qwen3_lora_pretrain.yaml`);
  assert.equal(pt.stage, "pt");
  assert.equal(pt.template, null);
  assert.equal(pt.packing, null);
  assert.deepEqual(
    [resolveDataArgs(dataArgsOf(pt)).packing, resolveDataArgs(dataArgsOf(pt)).cutoffLen],
    [true, 2048],
  );

  const plus = await loadTrainConfig(`${CONFIGS}llama3_lora_sft_loraplus.yaml`);
  assert.equal(plus.loraplus_lr_ratio, 16);
  assert.equal(plus.val_size, 0.1);
  assert.equal(plus.eval_strategy, "steps");
  assert.equal(plus.do_eval, true, "eval_strategy steps implies do_eval");
  assert.equal(plus.eval_steps, 500);
  assert.equal(plus.per_device_eval_batch_size, 1);

  const pissa = await loadTrainConfig(`${CONFIGS}llama3_lora_sft_pissa.yaml`);
  assert.deepEqual([pissa.pissa_init, pissa.pissa_iter, pissa.pissa_convert], [true, 16, true]);

  const pro = await loadTrainConfig(`${CONFIGS}llama3_freeze_sft_llama_pro.yaml`);
  assert.deepEqual([pro.use_llama_pro, pro.finetuning_type, pro.freeze_trainable_layers], [true, "freeze", 8]);
  const neft = parseTrainArgs(`${M}neftune_noise_alpha: 5\nshift_attn: true\n`);
  assert.deepEqual([neft.neftune_noise_alpha, neft.shift_attn, neft.bucket], [5, true, 8]);
  assert.ok(neft.warnings.some((w) => /^bucket: 8 \(LF pads training batches to a multiple of 8\)/.test(w)));
  assert.equal(parseTrainArgs(`${M}shift_attn: true\nbucket: 64\n`).bucket, 64, "a bucket set is kept");

  const tiny = await loadTrainConfig(`${CONFIGS}tiny_lora_sft.yaml`);
  assert.deepEqual(tiny.lora_target, ["q_proj", "v_proj"]);
  assert.equal(tiny.lora_alpha, 8);
  assert.deepEqual(tiny.lr_scheduler_kwargs, { min_lr_rate: 0.1 });
  assert.deepEqual([tiny.executor, tiny.bucket, tiny.max_steps], ["webgpu", 16, 4]);

  const dpo = await loadTrainConfig(`${CONFIGS}qwen3_lora_dpo.yaml`);
  assert.deepEqual([dpo.stage, dpo.pref_beta, dpo.pref_loss, dpo.pref_ftx], ["dpo", 0.1, "sigmoid", 0]);
  assert.deepEqual([dpo.dpo_label_smoothing, dpo.simpo_gamma, dpo.ref_model], [0, 0.5, null]);
  assert.deepEqual([dpo.kto_chosen_weight, dpo.kto_rejected_weight], [1, 1]);
});

Deno.test("LF examples using features Whetstone lacks fail naming the key", async () => {
  const cases: [string, RegExp][] = [];
  for (const [file, re] of cases) await assert.rejects(loadTrainConfig(`${CONFIGS}${file}`), re);
  await assert.rejects(
    loadTrainConfig(`${CONFIGS}missing.yaml`),
    /missing\.yaml: cannot read the config: no such file/,
  );
});

Deno.test("defaults are LF's dataclass defaults (HF TrainingArguments for the trainer keys)", () => {
  const a = parseTrainArgs(M);
  const expected: Partial<TrainArgs> = {
    adapter_name_or_path: null,
    model_revision: "main",
    stage: "sft",
    do_train: false,
    do_eval: false,
    finetuning_type: "lora",
    lora_rank: 8,
    lora_alpha: 16,
    lora_dropout: 0,
    lora_target: "all",
    additional_target: null,
    use_rslora: false,
    use_dora: false,
    pissa_init: false,
    pissa_iter: 16,
    pissa_convert: false,
    loraplus_lr_ratio: null,
    loraplus_lr_embedding: 1e-6,
    create_new_adapter: false,
    freeze_trainable_layers: 2,
    freeze_trainable_modules: "all",
    freeze_extra_modules: null,
    template: null,
    dataset: null,
    eval_dataset: null,
    dataset_dir: "data",
    cutoff_len: 2048,
    max_samples: null,
    val_size: 0,
    packing: null,
    neat_packing: false,
    train_on_prompt: false,
    mask_history: false,
    mix_strategy: "concat",
    interleave_probs: null,
    preprocessing_batch_size: 1000,
    enable_thinking: true,
    output_dir: "trainer_output",
    overwrite_output_dir: false,
    logging_strategy: "steps",
    logging_steps: 500,
    save_strategy: "steps",
    save_steps: 500,
    save_total_limit: null,
    per_device_train_batch_size: 8,
    per_device_eval_batch_size: 8,
    gradient_accumulation_steps: 1,
    learning_rate: 5e-5,
    num_train_epochs: 3,
    max_steps: -1,
    lr_scheduler_type: "linear",
    lr_scheduler_kwargs: {},
    warmup_ratio: 0,
    warmup_steps: 0,
    weight_decay: 0,
    adam_beta1: 0.9,
    adam_beta2: 0.999,
    adam_epsilon: 1e-8,
    max_grad_norm: 1,
    optim: "adamw",
    seed: 42,
    data_seed: null,
    bf16: false,
    fp16: false,
    resume_from_checkpoint: null,
    eval_strategy: "no",
    eval_steps: null,
    plot_loss: false,
    executor: "auto",
    bucket: 64,
    warnings: [],
  };
  for (const [k, v] of Object.entries(expected)) assert.deepEqual(a[k as keyof TrainArgs], v, k);
  // Every `train` key of the table is a field, and nothing else is.
  const trainKeys = Object.entries(KEYS).filter(([, s]) => s.use === "train").map(([k]) => k);
  assert.deepEqual(Object.keys(a).sort(), [...trainKeys, "warnings"].sort());
});

Deno.test("unknown keys are errors naming the closest known keys; all problems at once, with the file", () => {
  const msg = fails(`${M}lora_rnak: 4\nlearning_rat: 1.0e-4\nfoo_bar_baz: 1\n`, [], "my.yaml");
  const lines = msg.split("\n");
  assert.equal(lines.length, 3);
  assert.match(lines[0], /^my\.yaml: unknown key "lora_rnak"; did you mean lora_rank/);
  assert.match(lines[1], /^my\.yaml: unknown key "learning_rat"; did you mean learning_rate/);
  assert.match(lines[2], /^my\.yaml: unknown key "foo_bar_baz" \(not a LLaMA-Factory or Whetstone argument\)/);
});

Deno.test("bad values name the key, the value and what is accepted", () => {
  const cases: [string, RegExp][] = [
    ["lora_rank: 0", /lora_rank: expected an integer >= 1, got 0/],
    ["lora_rank: 2.5", /lora_rank: expected an integer >= 1, got 2\.5/],
    ["lora_dropout: 1", /lora_dropout: expected a number in \[0, 1\), got 1/],
    ["learning_rate: '1e-4'", /learning_rate: expected a number >= 0, got "1e-4" \(a string: write the number/],
    ["warmup_ratio: 1.5", /warmup_ratio: expected a number in \[0, 1\], got 1\.5/],
    ["do_train: maybe", /do_train: expected true or false, got "maybe"/],
    ["stage: sfx", /stage: expected one of pt, sft, rm, ppo, dpo, kto, got "sfx"; did you mean/],
    ["stage: ppo", /reward_model: `reward_model` is necessary for PPO training\./],
    ["stage: ppo\nreward_model: r\nfinetuning_type: full", /reward_model_type: `reward_model_type` cannot be lora/],
    ["reward_model_type: api", /reward_model_type: api is not supported by Whetstone yet/],
    ["pref_loss: bco", /pref_loss: expected one of sigmoid, hinge, ipo, kto_pair, orpo, simpo, got "bco"/],
    ["pref_beta: 0", /pref_beta: expected a number > 0, got 0/],
    ["stage: dpo\npref_loss: ipo\ndpo_label_smoothing: 0.1", /`dpo_label_smoothing` is only valid for sigmoid/],
    ["ref_model_adapters: a", /ref_model_adapters: expected ref_model/],
    ["finetuning_type: oft\noft_rank: 8", /oft_rank: You can only specify either r \(8\) or oft_block_size \(32\)/],
    ["finetuning_type: oft\noft_block_size: 0", /oft_rank: Either `r` or `oft_block_size` must be non-zero/],
    ["module_dropout: 1", /module_dropout: expected a number in \[0, 1\), got 1/],
    ["optim: lion_8bit", /optim: lion_8bit is not supported by Whetstone yet \(supported: adamw, sgd, adafactor/],
    ["optim: sgd\noptim_args: momentum=x", /optim_args: momentum: expected a number, got "x"/],
    ["optim: sgd\noptim_args: nesterov=true", /optim_args: nesterov: Nesterov momentum requires a momentum/],
    ["optim: sgd\noptim_args: momentum", /optim_args: expected key=value entries separated by commas, got "momentum"/],
    ["optim: sgd\noptim_args: momentum=0.9,dampening=0.1", /optim_args: dampening: only 0 is supported/],
    [
      "optim: adamx",
      /optim: expected one of adamw, sgd, adafactor, lion_32bit, adamw_8bit, adamw_torch.* got "adamx"; did you mean adamw/,
    ],
    ["mix_strategy: mixed", /mix_strategy: expected one of concat, interleave_under, interleave_over/],
    ["save_strategy: best", /save_strategy: best is not supported by Whetstone yet/],
    ["executor: cuda", /executor: expected one of auto, webgpu, onnx, reference, got "cuda"/],
    ["lora_target: 3", /lora_target: expected a comma-separated list of names \(or a YAML list\), got 3/],
    ["interleave_probs: a,b", /interleave_probs: expected a comma-separated list of numbers/],
    ["lr_scheduler_kwargs: 3", /lr_scheduler_kwargs: expected a mapping \(or a JSON object text\) or null, got 3/],
    ["num_train_epochs: null", /num_train_epochs: expected a number >= 0, got null/],
    ["resume_from_checkpoint: ''", /resume_from_checkpoint: expected a checkpoint folder, true .* or false or null/],
  ];
  for (const [line, re] of cases) assert.match(fails(`${M}${line}\n`), re, line);
});

Deno.test("features Whetstone lacks are errors unless they hold LF's default", () => {
  assert.match(
    fails(`${M}quantization_device_map: auto\n`),
    /quantization_device_map is not supported by Whetstone yet .*got "auto": remove it/,
  );
  assert.match(
    fails(`${M}finetuning_type: full\nuse_galore: true\ngalore_layerwise: true\ngradient_accumulation_steps: 2\n`),
    /gradient_accumulation_steps: Per-layer GaLore does not support gradient accumulation\./,
  );
  assert.match(
    fails(`${M}finetuning_type: full\nuse_apollo: true\napollo_layerwise: true\ngradient_accumulation_steps: 2\n`),
    /gradient_accumulation_steps: Per-layer APOLLO does not support gradient accumulation\./,
  );
  assert.match(fails(`${M}use_apollo: true\n`), /use_apollo: Cannot use LoRA with GaLore, APOLLO or BAdam together\./);
  assert.match(
    fails(`${M}finetuning_type: full\nuse_apollo: true\nuse_galore: true\n`),
    /use_apollo: Cannot use GaLore, APOLLO or BAdam together\./,
  );
  assert.match(
    fails(`${M}finetuning_type: full\nuse_apollo: true\napollo_proj: svd\n`),
    /apollo_proj: svd is not supported/,
  );
  assert.match(
    fails(`${M}finetuning_type: full\nuse_apollo: true\noptim: sgd\n`),
    /optim: APOLLO runs with optim adamw_torch/,
  );
  assert.match(fails(`${M}mixture_of_depths: convert\n`), /mixture_of_depths is not supported by Whetstone yet/);
  assert.equal(parseTrainArgs(`${M}rope_scaling: yarn\n`).rope_scaling, "yarn"); // LF's key, applied at load
  assert.match(fails(`${M}rope_scaling: ntk\n`), /rope_scaling/);
  assert.match(fails(`${M}use_unsloth: true\n`), /use_unsloth is not supported/);
  assert.match(fails(`${M}neftune_noise_alpha: 0\n`), /neftune_noise_alpha/);
  assert.match(fails(`${M}stage: ppo\nneftune_noise_alpha: 5\n`), /neftune_noise_alpha: .*not ppo/);
  const ppoS2 = parseTrainArgs(`${M}stage: ppo\nreward_model: r\nshift_attn: true\n`);
  assert.ok(ppoS2.warnings.some((w) => /shift_attn: in ppo S²-attention acts in the training-mode forwards/.test(w)));
  assert.match(
    fails(`${M}finetuning_type: full\nuse_llama_pro: true\n`),
    /use_llama_pro: `use_llama_pro` is only valid/,
  );
  assert.match(fails(`${M}badam_update_ratio: 0\n`), /badam_update_ratio: expected a number in \(0.000001, 1\], got 0/);
  assert.match(fails(`${M}badam_mask_mode: random\n`), /badam_mask_mode: expected one of adjacent, scatter/);

  assert.match(fails(`${M}infer_backend: vllm\n`), /infer_backend: vLLM\/SGLang backend is only available for API/);
  // Off, as LF's defaults or null: accepted.
  const ok = parseTrainArgs(
    `${M}quantization_bit: null\nuse_galore: false\ndeepspeed: null\npref_beta: 0.1\npref_loss: sigmoid\n` +
      "double_quantization: true\nuse_unsloth: no\nfsdp: ''\ninfer_backend: huggingface\nrope_scaling: ~\n",
  );
  assert.deepEqual(ok.warnings, []);
});

Deno.test("keys without effect are accepted, with a note where LF would act on them", () => {
  const a = parseTrainArgs(
    `${M}report_to: wandb\ndataloader_num_workers: 8\npreprocessing_num_workers: 16\noverwrite_cache: true\n` +
      "include_effective_tokens_per_second: true\nddp_timeout: 180000000\nflash_attn: fa2\ntrust_remote_code: true\n" +
      "bf16: true\ngradient_checkpointing: true\nexport_dir: out\ntemperature: 0.5\n",
  );
  assert.deepEqual(a.warnings, [
    "include_effective_tokens_per_second: effective tokens per second are not logged yet; ignored",
    "gradient_checkpointing: LF sets it from disable_gradient_checkpointing (default false: checkpointing on); use that key; ignored",
    "report_to: Whetstone does not write to wandb (trainer_log.jsonl and trainer_state.json hold the same logs; " +
    "tensorboard writes event files); see docs/inert_keys.md",
    "bf16: Whetstone trains in f32 (f32 master weights and compute); ignored",
  ]);
  assert.deepEqual(parseTrainArgs(`${M}report_to: [none]\nbf16: false\nfp16: false\n`).warnings, []);
  // fp16 takes effect where the step has an f16 path; the run logs its choice (engine/train/step/precision.ts).
  assert.deepEqual(parseTrainArgs(`${M}fp16: true\n`).warnings, []);
});

Deno.test("key=value overrides are YAML scalars, applied after the file", () => {
  const a = parseTrainArgs(`${M}learning_rate: 1.0e-4\ndataset: a\ndo_train: true\n`, [
    "learning_rate=1e-5",
    "lora_target=q_proj,v_proj",
    "do_train=false",
    "num_train_epochs=1",
    "resume_from_checkpoint=true",
    "lr_scheduler_type=cosine_with_min_lr",
    "lr_scheduler_kwargs.min_lr=1e-6",
    "default_system=You are helpful, and brief.",
    "bf16=yes",
  ]);
  assert.equal(a.learning_rate, 1e-5);
  assert.deepEqual(a.lora_target, ["q_proj", "v_proj"]);
  assert.equal(a.do_train, false);
  assert.equal(a.num_train_epochs, 1);
  assert.equal(a.resume_from_checkpoint, true);
  assert.deepEqual(a.lr_scheduler_kwargs, { min_lr: 1e-6 });
  const wsd = parseTrainArgs(
    `${M}lr_scheduler_type: warmup_stable_decay\nlr_scheduler_kwargs: '{"num_decay_steps": 4, "decay_type": "1-sqrt"}'\n`,
  );
  assert.deepEqual(wsd.lr_scheduler_kwargs, { num_decay_steps: 4, decay_type: "1-sqrt" });
  const cw = parseTrainArgs(
    `${M}lr_scheduler_type: cosine_warmup_with_min_lr\nlr_scheduler_kwargs: {min_lr_rate: 0.1, warmup_lr_rate: 0.2}\n`,
  );
  assert.equal(cw.lr_scheduler_type, "cosine_warmup_with_min_lr");
  assert.deepEqual(cw.lr_scheduler_kwargs, { min_lr_rate: 0.1, warmup_lr_rate: 0.2 });
  assert.equal(
    parseTrainArgs(`${M}lr_scheduler_type: reduce_lr_on_plateau\n`).lr_scheduler_type,
    "reduce_lr_on_plateau",
  );
  assert.equal(a.default_system, "You are helpful, and brief.");
  assert.equal(a.bf16, true);
  assert.match(fails(M, ["lora_rnak=4"]), /unknown key "lora_rnak" \(command line\); did you mean lora_rank/);
  assert.match(fails(M, ["lora_rank=0"]), /lora_rank: expected an integer >= 1, got 0 \(command line\)/);
  assert.match(fails(M, ["learning_rate"]), /override "learning_rate": expected key=value/);
  // JSON text and mappings are inputs too.
  assert.equal(parseTrainArgs('{"model_name_or_path": "m", "lora_rank": 16}').lora_alpha, 32);
  assert.equal(parseTrainArgs({ model_name_or_path: "m", lora_alpha: 7 }).lora_alpha, 7);
  assert.match(fails("- a\n- b\n"), /t\.yaml: expected a mapping of argument names to values, got a list/);
  assert.match(fails("a: [\n"), /t\.yaml: not valid YAML/);
});

Deno.test("command lines: config.yaml key=value, or --key value flags", () => {
  assert.deepEqual(splitTrainCommand(["x.yaml", "a=1", "b=c"]), { config: "x.yaml", overrides: ["a=1", "b=c"] });
  assert.deepEqual(
    splitTrainCommand(["--model_name_or_path", "m", "--do_train", "--lora_rank=4", "--plot_loss", "false"]),
    { overrides: ["model_name_or_path=m", "do_train=true", "lora_rank=4", "plot_loss=false"] },
  );
  assert.throws(() => splitTrainCommand(["-x"]), /unexpected argument "-x"/);
});

Deno.test("cross-field rules of LF's get_train_args and HF's TrainingArguments", () => {
  const cases: [string, RegExp][] = [
    ["do_train: true", /dataset: Please specify dataset for training\./],
    ["do_eval: true\ndataset: a", /do_eval: Please specify dataset for evaluation\./],
    ["eval_strategy: epoch\ndataset: a", /eval_strategy: Please specify dataset for evaluation\./],
    ["val_size: 0.1", /val_size: Cannot specify `val_size` if `dataset` is None\./],
    ["val_size: 0.1\ndataset: a\neval_dataset: b", /Cannot specify `val_size` if `eval_dataset` is not None/],
    ["val_size: 2.5\ndataset: a", /val_size: expected a fraction in \[0, 1\) or an integer count, got 2\.5/],
    ["dataset: a,b\ninterleave_probs: 0.5,0.5", /`interleave_probs` is only valid for interleaved mixing\./],
    [
      "dataset: a,b\nmix_strategy: interleave_under\ninterleave_probs: 0.5",
      /The length of dataset and interleave probs should be identical\./,
    ],
    ["dataset: a\nstreaming: true", /streaming is not supported by Whetstone yet \(streaming datasets in training/],
    ["train_on_prompt: true\nmask_history: true", /`mask_history` is incompatible with `train_on_prompt`/],
    ["stage: pt\nneat_packing: true", /`neat_packing` cannot be set as True except SFT/],
    ["fp16: true\nbf16: true", /fp16: At most one of fp16 and bf16 can be True, but not both/],
    ["finetuning_type: full\nuse_dora: true", /use_dora: `use_dora` is only valid for LoRA training\./],
    ["finetuning_type: freeze\nloraplus_lr_ratio: 16", /`loraplus_lr_ratio` is only valid for LoRA training/],
    ["finetuning_type: full\nadapter_name_or_path: a", /adapter_name_or_path: Adapter is only valid for the LoRA/],
    ["logging_steps: 2.5", /logging_steps: --logging_steps must be an integer if bigger than 1: 2\.5/],
    ["logging_steps: 0", /logging strategy steps requires non-zero --logging_steps/],
    ["warmup_steps: 10.5", /warmup_steps: expected an integer count, or a ratio below 1, got 10\.5/],
    ["lr_scheduler_type: cosine_with_min_lr", /One of min_lr or min_lr_rate should be set/],
    [
      "lr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr: 1.0e-6, min_lr_rate: 0.1}",
      /Only one of min_lr or min_lr_rate should be set/,
    ],
    ["lr_scheduler_type: cosine_warmup_with_min_lr", /lr_scheduler_kwargs: One of min_lr or min_lr_rate should be set/],
    [
      "lr_scheduler_type: cosine_warmup_with_min_lr\nlr_scheduler_kwargs: {min_lr: 1.0e-6, warmup_lr_rate: a}",
      /lr_scheduler_kwargs: warmup_lr_rate: expected a number, got "a"/,
    ],
    [
      "lr_scheduler_type: cosine_warmup_with_min_lr\nlr_scheduler_kwargs: {min_lr: 1.0e-6, warmup_ratio: 0.1}",
      /lr_scheduler_kwargs: cosine_warmup_with_min_lr takes num_cycles, min_lr, min_lr_rate, warmup_lr_rate, got "warmup_ratio"/,
    ],
    ["lr_scheduler_kwargs: {num_cycles: 0.5}", /lr_scheduler_kwargs: linear takes no arguments, got "num_cycles"/],
    [
      "lr_scheduler_type: polynomial\nlr_scheduler_kwargs: {power: two}",
      /lr_scheduler_kwargs: power: expected a number, got "two"/,
    ],
    [
      "lr_scheduler_type: cosine_with_restarts\nlr_scheduler_kwargs: {num_cycles: 1.5}",
      /lr_scheduler_kwargs: num_cycles: expected an integer, got 1.5/,
    ],
    ["template: qwen3_nothinc", /template: Template qwen3_nothinc does not exist\. Did you mean qwen3_nothink/],
    ["tool_format: nope", /tool_format: expected one of default, .*got "nope"/],
    ["model_name_or_path: ''", /model_name_or_path: required/],
    ["evaluation_strategy: steps\neval_strategy: epoch", /evaluation_strategy and eval_strategy disagree/],
  ];
  for (const [text, re] of cases) {
    const src = text.startsWith("model_name_or_path") ? text : `${M}${text}`;
    assert.match(fails(src), re, text);
  }
  assert.match(fails("dataset: a\n"), /model_name_or_path: required/);
});

Deno.test("derived values: lora_alpha, eval_steps, warmup, evaluation_strategy", () => {
  assert.equal(parseTrainArgs(`${M}lora_rank: 16`).lora_alpha, 32);
  assert.equal(parseTrainArgs(`${M}lora_rank: 16\nlora_alpha: 8`).lora_alpha, 8);
  const ev = parseTrainArgs(`${M}dataset: a\nval_size: 0.1\nevaluation_strategy: steps\nlogging_steps: 5`);
  assert.deepEqual([ev.eval_strategy, ev.do_eval, ev.eval_steps], ["steps", true, 5]);
  const w = parseTrainArgs(`${M}warmup_ratio: 0.1\nwarmup_steps: 3`);
  assert.match(w.warnings[0], /warmup_steps will override any effect of warmup_ratio/);
  assert.equal(warmupSteps(w, 100), 3);
  assert.equal(warmupSteps({ warmup_steps: 0, warmup_ratio: 0.1 }, 95), 10);
  assert.equal(warmupSteps({ warmup_steps: 0.05, warmup_ratio: 0 }, 100), 5);
  assert.equal(resolveSteps(0.25, 10), 3);
  assert.equal(resolveSteps(50, 10), 50);
  const optim = parseTrainArgs(`${M}optim: adamw_torch_fused`);
  assert.equal(optim.optim, "adamw");
  assert.equal(parseTrainArgs(`${M}optim: sgd`).optim, "sgd");
  assert.equal(parseTrainArgs(`${M}optim: adafactor`).optim, "adafactor");
  assert.equal(parseTrainArgs(`${M}optim: paged_lion_32bit`).optim, "lion_32bit");
  for (const o of ["adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit"]) {
    assert.equal(parseTrainArgs(`${M}optim: ${o}`).optim, "adamw_8bit");
  }
  assert.ok(
    parseTrainArgs(`${M}optim: paged_adamw_8bit`).warnings.some((w) => /paging is a CUDA memory matter/.test(w)),
  );
  assert.ok(!parseTrainArgs(`${M}optim: adamw_8bit`).warnings.some((w) => /paging/.test(w)));
  assert.equal(
    parseTrainArgs(`${M}optim: sgd\noptim_args: momentum=0.9, nesterov=True`).optim_args,
    "momentum=0.9, nesterov=True",
  );
  assert.equal(parseTrainArgs(`${M}use_muon: true`).use_muon, true);
  assert.equal(parseTrainArgs(`${M}use_adam_mini: true`).use_adam_mini, true);
  const lists = parseTrainArgs(`${M}dataset: [a, "b, c"]\nfreeze_trainable_modules: mlp,self_attn\n`);
  assert.deepEqual(lists.dataset, ["a", "b", "c"]);
  assert.deepEqual(lists.freeze_trainable_modules, ["mlp", "self_attn"]);
  const d = loadDatasetsArgsOf(parseTrainArgs(`${M}dataset: a\nseed: 7\nval_size: 3`));
  assert.deepEqual([d.dataset, d.seed, d.val_size, d.dataset_dir], [["a"], 7, 3, "data"]);
});

Deno.test("checkOutputDir: LF's auto-resume, overwrite and resume_from_checkpoint rules", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const args = (extra = "") => parseTrainArgs(`${M}dataset: a\ndo_train: true\noutput_dir: ${dir}/out\n${extra}`);
    assert.deepEqual(await checkOutputDir(args()), { resumeFrom: null, notes: [] }, "no output_dir yet");
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/trainer_log.jsonl`, "{}\n");
    assert.equal((await checkOutputDir(args())).resumeFrom, null, "logs alone do not block");
    await Deno.writeTextFile(`${dir}/out/adapter_model.safetensors`, "");
    await assert.rejects(
      checkOutputDir(args(), "c.yaml"),
      /c\.yaml: output_dir .*Output directory already exists and is not empty\. Please set `overwrite_output_dir`\./,
    );
    assert.equal((await checkOutputDir(args("overwrite_output_dir: true"))).resumeFrom, null);
    assert.equal((await checkOutputDir(args("resume_from_checkpoint: false"))).resumeFrom, null);
    await assert.rejects(checkOutputDir(args("resume_from_checkpoint: true")), /No valid checkpoint found in output/);
    await Deno.mkdir(`${dir}/out/checkpoint-2`);
    await Deno.mkdir(`${dir}/out/checkpoint-10`);
    await Deno.writeTextFile(`${dir}/out/checkpoint-99`, "a file, not a checkpoint");
    const auto = await checkOutputDir(args());
    assert.equal(auto.resumeFrom, `${dir}/out/checkpoint-10`);
    assert.match(auto.notes.join("\n"), /Resuming training from .*checkpoint-10\./);
    assert.equal((await checkOutputDir(args("resume_from_checkpoint: true"))).resumeFrom, `${dir}/out/checkpoint-10`);
    const explicit = await checkOutputDir(args(`resume_from_checkpoint: ${dir}/out/checkpoint-2`));
    assert.equal(explicit.resumeFrom, `${dir}/out/checkpoint-2`);
    await assert.rejects(
      checkOutputDir(args(`resume_from_checkpoint: ${dir}/nope`)),
      /resume_from_checkpoint: Can't find a valid checkpoint at/,
    );
    // A checkpoint written with save_only_model (trainer state, no optimizer states) cannot be resumed from.
    await Deno.writeTextFile(`${dir}/out/checkpoint-10/trainer_state.json`, "{}");
    await assert.rejects(checkOutputDir(args()), /checkpoint-10 holds only the model \(saved with save_only_model/);
    await Deno.writeTextFile(`${dir}/out/checkpoint-10/optimizer.safetensors`, "");
    assert.equal((await checkOutputDir(args())).resumeFrom, `${dir}/out/checkpoint-10`);
    const noTrain = parseTrainArgs(`${M}output_dir: ${dir}/out\n`);
    assert.equal((await checkOutputDir(noTrain)).resumeFrom, null, "only training resumes");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
