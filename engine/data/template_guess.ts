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
import "./templates_registry_latest.ts";

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
  // the text side of multimodal models (templates_registry_mm.ts)
  qwen3_vl_moe: "qwen3_vl",
  qwen2_audio: "qwen2_audio",
  qwen2_5_omni: "qwen2_omni",
  qwen3_omni_moe: "qwen3_omni",
  llava: "llava",
  llava_next: "llava_next",
  llava_next_video: "llava_next_video",
  video_llava: "video_llava",
  mllama: "mllama",
  paligemma: "paligemma",
  kimi_vl: "kimi_vl",
  glm4v: "glm4v",
  glm4v_moe: "glm4_5v",
  internvl: "intern_vl",
  minicpmv: "minicpm_v",
  minicpmo: "minicpm_o",
  dots_ocr: "dots_ocr",
  // LF's newest templates (templates_registry_latest.ts)
  qwen3_5: "qwen3_5",
  qwen3_5_text: "qwen3_5",
  qwen3_5_moe: "qwen3_5",
  gemma4: "gemma4",
  gemma4_text: "gemma4",
  lfm2: "lfm2",
  lfm2_moe: "lfm2",
  lfm2_vl: "lfm2_vl",
  glm4_moe: "glm4_moe",
  gpt_oss: "gpt_oss",
};

/** Whether a registered template's user slot holds `marker` (so a chat template with it fits that template). */
function usesMarker(name: string, marker: string): boolean {
  return TEMPLATES.get(name)?.user.some((s) => typeof s === "string" && s.includes(marker)) ?? false;
}

/** The template by the chat template's markers (`model_type` breaks ties within a family). */
function byMarkers(t: string, type: string): string | undefined {
  const own = BY_MODEL_TYPE[type];
  /** The model_type's template when its user slot has the marker too. */
  const fits = (marker: string) => own !== undefined && usesMarker(own, marker) ? own : undefined;
  if (t.includes("<|im_start|>")) {
    if (type.startsWith("qwen")) return fits("<|im_start|>") ?? (type.startsWith("qwen3") ? "qwen3" : "qwen");
    return fits("<|im_start|>") ?? "chatml";
  }
  if (t.includes("<|start_header_id|>")) return fits("<|start_header_id|>") ?? "llama3";
  if (t.includes("<|header_start|>")) return "llama4";
  if (t.includes("<|turn>")) return fits("<|turn>") ?? "gemma4";
  if (t.includes("<start_of_turn>")) return fits("<start_of_turn>") ?? "gemma";
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
