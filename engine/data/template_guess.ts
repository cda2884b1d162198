/**
 * A guess at the LLaMA-Factory template of a model folder, for pickers (the Board's template box): the chat
 * template's markers first (`<|im_start|>` is ChatML, `<|start_header_id|>` Llama 3, ...), then the config's
 * `model_type`. LlamaBoard guesses from the model's name in its table of supported models; a folder here has no
 * such name, so its files are read instead. Only templates that exist in the registry are named.
 * @module
 */
import { TEMPLATES } from "./templates_registry.ts";
import "./templates_registry_more.ts";
import "./templates_registry_mm.ts";

/** What a model folder tells about its template. */
export interface TemplateClues {
  /** config.json's `model_type`. */
  modelType?: string | null;
  /** tokenizer_config.json's `chat_template` (or chat_template.jinja's text). */
  chatTemplate?: string | null;
}

/** `model_type` → template, for folders whose chat template says nothing (or has none). */
const BY_MODEL_TYPE: Record<string, string> = {
  qwen2: "qwen",
  qwen2_moe: "qwen",
  qwen3: "qwen3",
  qwen3_moe: "qwen3",
  qwen2_vl: "qwen2_vl",
  qwen2_5_vl: "qwen2_vl",
  qwen3_vl: "qwen3_vl",
  gemma: "gemma",
  gemma2: "gemma2",
  gemma3: "gemma3",
  gemma3_text: "gemma3",
  mistral: "mistral",
  mixtral: "mistral",
  phi3: "phi",
  glm4: "glm4",
  cohere: "cohere",
  exaone: "exaone",
  granite: "granite3",
  olmo2: "olmo",
  deepseek_v3: "deepseek3",
  falcon: "falcon",
  falcon_h1: "falcon_h1",
  llama4: "llama4",
  mimo: "mimo",
};

/** The template by the chat template's markers (`model_type` breaks ties within a family). */
function byMarkers(t: string, type: string): string | undefined {
  if (t.includes("<|im_start|>")) {
    if (type.startsWith("qwen3")) return "qwen3";
    if (type.startsWith("qwen")) return BY_MODEL_TYPE[type] ?? "qwen";
    return BY_MODEL_TYPE[type] ?? "chatml";
  }
  if (t.includes("<|start_header_id|>")) return "llama3";
  if (t.includes("<|header_start|>")) return "llama4";
  if (t.includes("<start_of_turn>")) return BY_MODEL_TYPE[type]?.startsWith("gemma") ? BY_MODEL_TYPE[type] : "gemma";
  if (t.includes("<｜User｜>")) return "deepseek3";
  if (t.includes("[INST]")) return type === "llama" ? "llama2" : "mistral";
  if (t.includes("<|user|>") && t.includes("<|end|>")) return "phi";
  return undefined;
}

/** The template name guessed for a model folder, or null when nothing points to one. */
export function guessTemplate(clues: TemplateClues): string | null {
  const type = (clues.modelType ?? "").toLowerCase();
  const name = (clues.chatTemplate ? byMarkers(clues.chatTemplate, type) : undefined) ?? BY_MODEL_TYPE[type];
  return name !== undefined && TEMPLATES.has(name) ? name : null;
}

/** The names of the registered templates (LLaMA-Factory's `--template` values), sorted. */
export function templateNames(): string[] {
  return [...TEMPLATES.keys()].sort();
}
