/**
 * What a training run starts from: its data (loaded, templated and tokenized as LLaMA-Factory prepares it), its
 * executor, and its model with the adapter attached and the trainable parameters chosen.
 * @module
 */
import { configureMoe } from "../nn/moe.ts";
import { isBuffer } from "../nn/moe_router.ts";
import type { TrainArgs } from "../config/args.ts";
import { dataArgsOf, hubOptionsOf, loadDatasetsArgsOf, templateOptionsOf } from "../config/views.ts";
import { loadDatasets } from "../data/loader.ts";
import { processDataset, type ProcessResult } from "../data/process.ts";
import { type ChatTemplate, getTemplate } from "../data/template.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { Executor } from "../exec/executor.ts";
import { createExecutor, type ExecutorKind } from "../exec/pick.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { hasGpu } from "../gpu/device.ts";
import { attachAdapter, loraConfigFromArgs } from "../nn/lora.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { quantizeOptionsFromArgs } from "../nn/quantize.ts";
import { attachOft, oftConfigFromArgs } from "../nn/oft.ts";
import { expandedModules } from "../nn/llama_pro.ts";
import { freezeTrainable } from "./freeze.ts";
import { vocabTrainable } from "./vocab_run.ts";

/** The tokenized data of a run. */
export interface PreparedData {
  train: ProcessResult;
  eval?: ProcessResult;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** The template's stop token ids. */
  stop: number[];
}

/** Loads, templates and tokenizes the datasets of `a` as LLaMA-Factory would. */
export async function prepareData(a: TrainArgs): Promise<PreparedData> {
  const tokenizer = await loadTokenizer(a.model_name_or_path);
  const template = getTemplate(tokenizer, templateOptionsOf(a));
  const loaded = await loadDatasets(loadDatasetsArgsOf(a));
  const args = dataArgsOf(a);
  const train = processDataset(loaded.train, template, args);
  if (!train.records.length) throw new Error(`dataset ${a.dataset}: no valid examples for stage ${a.stage}`);
  return {
    train,
    eval: loaded.eval ? processDataset(loaded.eval, template, args) : undefined,
    tokenizer,
    template,
    stop: template.stopTokenIds(),
  };
}

/**
 * Loads the model of a run on `executor` (f32 for full and freeze training, stored dtypes under LoRA) with its adapter
 * (`adapter_name_or_path`'s, or a new one), and names the parameters that train: the adapter's, all, or freeze's.
 */
export async function loadTrainModel(a: TrainArgs, executor: Executor): Promise<{ model: Model; trainable: string[] }> {
  const lora = a.finetuning_type === "lora";
  const adapterTuning = lora || a.finetuning_type === "oft";
  // QLoRA: the base linears are quantized as they load (LoRA only; checked by the config rules).
  const quantization = quantizeOptionsFromArgs(a);
  if (quantization && !adapterTuning) {
    throw new Error("quantization_bit: Quantization is only compatible with the LoRA or OFT method.");
  }
  const model = await loadModel(a.model_name_or_path, {
    executor,
    dtype: adapterTuning ? "stored" : "f32",
    quantization,
    hub: hubOptionsOf(a),
    // LF sets model_max_length to cutoff_len for training (hparams/parser.py).
    ropeScaling: a.rope_scaling ? { type: a.rope_scaling, modelMaxLength: a.cutoff_len } : undefined,
  });
  // MoE: the router's load-balancing loss joins the LM loss. LF's configure_moe lists no gpt_oss: its config.json's
  // output_router_logits and router_aux_loss_coef stand.
  if (model.config.family !== "gpt_oss") configureMoe(model.config.moe, a.moe_aux_loss_coef);
  if (lora) {
    const adapters = a.adapter_name_or_path ?? [];
    if (adapters.length > 1) throw new Error("adapter_name_or_path: stacking several adapters is not supported");
    const fresh = loraConfigFromArgs(a);
    // LLaMA Pro with LoRA: LF's find_expanded_modules turns the targets into the expanded layers' modules.
    if (a.use_llama_pro) fresh.targets = expandedModules(model.config, fresh.targets, a.freeze_trainable_layers);
    const source = adapters.length && !a.create_new_adapter ? adapters[0] : fresh;
    const adapter = await attachAdapter(model, source, { seed: a.seed, baseModel: a.model_name_or_path });
    // LF's _setup_lora_tuning: a resized vocabulary trains the embeddings too (additional_target / modules_to_save);
    // an adapter saved with them trains them on.
    if (a.resize_vocab || adapter.modulesToSave.length) adapter.modulesToSave = await vocabTrainable(model);
    return { model, trainable: [...adapter.params.keys(), ...adapter.modulesToSave] };
  }
  if (a.finetuning_type === "oft") {
    const adapters = a.adapter_name_or_path ?? [];
    if (adapters.length > 1) throw new Error("adapter_name_or_path: stacking several adapters is not supported");
    const cfg = oftConfigFromArgs(a);
    if (a.use_llama_pro) cfg.targets = expandedModules(model.config, cfg.targets, a.freeze_trainable_layers);
    const source = adapters.length && !a.create_new_adapter ? adapters[0] : cfg;
    const adapter = await attachOft(model, source, a.model_name_or_path);
    return { model, trainable: [...adapter.params.keys()] };
  }
  // Buffers (deepseek_v3 / glm4_moe's e_score_correction_bias) are loaded but never trained, as in transformers.
  const params = [...model.params.keys()].filter((n) => !isBuffer(n));
  if (a.finetuning_type === "full") return { model, trainable: params };
  const trainable = freezeTrainable(params, model.config, {
    layers: a.freeze_trainable_layers,
    modules: a.freeze_trainable_modules,
    extra: a.freeze_extra_modules,
    llamaPro: a.use_llama_pro,
  });
  return { model, trainable };
}

/** The executor of a run; "webgpu" without any adapter falls back to the reference executor (bare machines). */
export async function pickExecutor(name: ExecutorKind | undefined): Promise<Executor> {
  if (name === "webgpu" && !(await hasGpu())) return new ReferenceExecutor();
  return await createExecutor(name ?? "auto", (line) => console.log(line));
}
