/**
 * LLaMA-Factory's newest templates (`data/template.py`, hiyouga/LLaMA-Factory commit 57a87f2c; tool formats of
 * `tool_utils.py` commit 8b1ed2fa in template_tools_latest.ts): qwen3_5, qwen3_5_nothink, qwen3_6, gemma4, gemma4n,
 * glm4_7 and aeva (`Glm47ReasoningTemplate`: the empty thought is `</think>` alone), glm_ocr, hy3, hunyuan_small,
 * hy_dense_1_8b, hy_dense_7b, lfm2, lfm2_vl, lighton_ocr, minicpm_v_4_6, moss_vl (`MossVLTemplate`: the tool text
 * loses its leading newlines when there is no system prompt), phi4_mini (a `StringFormatter` as `format_tools`: the
 * raw tools text inside `<|tool|>...<|/tool|>`), youtu and youtu_vl. Multimodal ones register their text side (their
 * `mm_plugin` is not ported; datasets with media columns are refused, see templates_registry_mm.ts).
 * fixtures/data_goldens/templates_latest.py registers the same slots in Python for the goldens.
 * Importing this module registers them; template.ts imports it.
 * @module
 */
import { BOS, registerTemplate, type TemplateArgs } from "./templates_registry.ts";

const CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const CHATML_ASSISTANT = "{{content}}<|im_end|>\n";
const CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n";
const QWEN_OBS = "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";

/** The qwen slots with a tool format. */
const qwen = (toolFormat: string, extra: TemplateArgs): TemplateArgs => ({
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  function: { slots: [CHATML_ASSISTANT], toolFormat },
  observation: [QWEN_OBS],
  toolFormat,
  stopWords: ["<|im_end|>"],
  replaceEos: true,
  ...extra,
});
/** The glm4 slots (glm_ocr, glm4_7, aeva). */
const glm = (toolFormat: string, extra: TemplateArgs): TemplateArgs => ({
  user: ["<|user|>\n{{content}}<|assistant|>"],
  assistant: ["\n{{content}}"],
  system: ["<|system|>\n{{content}}"],
  function: { slots: ["{{content}}"], toolFormat },
  observation: ["<|observation|>\n{{content}}<|assistant|>"],
  toolFormat,
  prefix: ["[gMASK]<sop>"],
  stopWords: ["<|user|>", "<|observation|>"],
  efficientEos: true,
  ...extra,
});
/** gemma4 and gemma4n (the `<|think|>` signal sits in the system slot, so a default system prompt is set). */
const gemma4: TemplateArgs = {
  user: ["<|turn>user\n{{content}}<turn|>\n<|turn>model\n"],
  assistant: ["{{content}}<turn|>\n"],
  system: ["<|turn>system\n<|think|>{{content}}<turn|>\n"],
  observation: ["<|turn>tool\n{{content}}<turn|>\n<|turn>model\n"],
  toolFormat: "gemma4",
  function: { slots: ["<|tool>{{content}}<tool|>"], toolFormat: "gemma4" },
  prefix: [BOS],
  stopWords: ["<turn|>"],
  defaultSystem: "You are a helpful assistant.",
  thoughtWords: ["<|channel>thought\n", "<channel|>"],
  replaceEos: true,
  kind: "reasoning",
};
/** lfm2 and lfm2_vl. */
const lfm2 = (defaultSystem: string): TemplateArgs => ({
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  function: { slots: [CHATML_ASSISTANT], toolFormat: "lfm2" },
  observation: [
    "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n<|im_start|>assistant\n",
  ],
  toolFormat: "lfm2",
  defaultSystem,
  stopWords: ["<|im_end|>"],
  toolCallWords: ["<|tool_call_start|>", "<|tool_call_end|>"],
  replaceEos: true,
});
const AEVA_SYSTEM = "You are an AI assistant named Aeva created by Zongzhi Lou. " +
  "Your answer should be friendly, unbiased, faithful, informative and detailed.";

registerTemplate("qwen3_5", qwen("qwen3_5", { kind: "reasoning" }));
registerTemplate("qwen3_5_nothink", qwen("qwen3_5", {}));
registerTemplate("qwen3_6", qwen("qwen3_5", { kind: "reasoning" }));
registerTemplate("gemma4", gemma4);
registerTemplate("gemma4n", gemma4);
registerTemplate("glm_ocr", glm("glm4", {}));
registerTemplate(
  "glm4_7",
  glm("glm4_moe", { thoughtWords: ["<think>", "</think>"], kind: "reasoning", emptyThoughtCloseOnly: true }),
);
registerTemplate(
  "aeva",
  glm("glm4_moe", {
    defaultSystem: AEVA_SYSTEM,
    thoughtWords: ["<think>", "</think>"],
    kind: "reasoning",
    emptyThoughtCloseOnly: true,
  }),
);
registerTemplate("hy3", {
  user: ["<｜hy_User｜>{{content}}<｜hy_Assistant｜>"],
  assistant: ["{{content}}<｜hy_eos｜>"],
  system: ["{{content}}"],
  prefix: [BOS],
  stopWords: ["<｜hy_eos｜>"],
  replaceEos: true,
  thoughtWords: ["<think>", "</think>"],
  kind: "reasoning",
});
registerTemplate("hunyuan_small", {
  user: ["<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>"],
  assistant: ["{{content}}<｜hy_place▁holder▁no▁2｜>"],
  system: ["{{content}}<｜hy_place▁holder▁no▁3｜>"],
  prefix: ["<｜hy_begin▁of▁sentence｜>"],
  stopWords: ["<｜hy_place▁holder▁no▁2｜>"],
});
registerTemplate("hy_dense_1_8b", {
  user: ["<｜hy_User｜>{{content}}"],
  assistant: ["<｜hy_Assistant｜>{{content}}"],
  system: ["{{content}}<｜hy_place▁holder▁no▁3｜>"],
  prefix: [BOS],
  stopWords: ["<｜hy_place▁holder▁no▁2｜>"],
  efficientEos: true,
});
registerTemplate("hy_dense_7b", {
  user: ["{{content}}<|extra_0|>"],
  assistant: ["{{content}}"],
  system: ["{{content}}<|extra_4|>"],
  prefix: [BOS],
  stopWords: ["<|eos|>"],
  efficientEos: true,
});
registerTemplate("lfm2", lfm2("You are a helpful AI assistant."));
registerTemplate("lfm2_vl", lfm2("You are a helpful multimodal assistant by Liquid AI."));
registerTemplate("lighton_ocr", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
  replaceEos: true,
});
registerTemplate("minicpm_v_4_6", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
  defaultSystem: "You are a helpful assistant.",
});
registerTemplate("moss_vl", qwen("qwen", { toolTextLstripWithoutSystem: true }));
registerTemplate("phi4_mini", {
  user: ["<|user|>{{content}}<|end|><|assistant|>"],
  assistant: ["{{content}}<|end|>"],
  system: ["<|system|>{{content}}<|end|>"],
  toolsSlot: "<|tool|>{{content}}<|/tool|>",
  stopWords: ["<|end|>"],
  replaceEos: true,
});
registerTemplate("youtu", {
  user: ["<|User|>{{content}}<|Assistant|>"],
  assistant: ["{{content}}<|end_of_text|>"],
  system: ["{{content}}"],
  function: { slots: ["{{content}}"], toolFormat: "default" },
  observation: ["<tool_response>\n{{content}}\n</tool_response><|Assistant|>"],
  prefix: [BOS],
  stopWords: ["<|end_of_text|>"],
  replaceEos: true,
  kind: "reasoning",
});
registerTemplate("youtu_vl", {
  user: ["<|begin_of_text|>user\n{{content}}<|end_of_text|>\n<|begin_of_text|>assistant\n"],
  assistant: ["{{content}}<|end_of_text|>\n"],
  system: ["<|begin_of_text|>system\n{{content}}<|end_of_text|>\n"],
  defaultSystem: "You are a helpful assistant.",
  stopWords: ["<|end_of_text|>"],
});
