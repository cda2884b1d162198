/**
 * The text side of LLaMA-Factory's multimodal templates (`data/template.py`, commit 00577a85; unchanged at 57a87f2c,
 * which templates_registry_latest.ts follows): dots_ocr, ernie_vl,
 * glm4v, glm4_5v, granite3_vision, intern_vl, intern_s1, keye_vl, kimi_vl, the llava family, mimo_vl, minicpm_v,
 * minicpm_o, ministral3, mllama, paligemma, paligemma_chat, pixtral, qwen2_audio, qwen2_omni, qwen3_omni,
 * qwen3_omni_nothink, video_llava, yi_vl — their slots, default system prompts, stop words, flags and template classes,
 * registered as {@link registerTemplate} does. Their `mm_plugin` (which expands image / video / audio placeholders) is
 * not: a dataset with `images`, `videos` or `audios` columns is refused before reading (formats.ts `datasetProblem`),
 * so these templates train and chat on text as LF does for a text-only row (the plugin leaves such a row unchanged).
 * fixtures/data_goldens/templates_mm.py registers the same slots in Python for the goldens.
 * Importing this module registers them; template.ts imports it.
 * @module
 */
import { BOS, EOS, registerTemplate, type TemplateArgs } from "./templates_registry.ts";

const CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const CHATML_ASSISTANT = "{{content}}<|im_end|>\n";
const CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n";
const QWEN_OBS = "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
const VICUNA_USER = "USER: {{content}} ASSISTANT:";
const VICUNA_SYSTEM = "A chat between a curious user and an artificial intelligence assistant. " +
  "The assistant gives helpful, detailed, and polite answers to the user's questions.";
const LLAMA3_USER = "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>" +
  "<|start_header_id|>assistant<|end_header_id|>\n\n";
const GEMMA_USER = "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n";
const GEMMA_OBS = "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n";

/** chatml's user / assistant / system slots. */
const chatml = (extra: TemplateArgs): TemplateArgs => ({
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
  ...extra,
});
/** The qwen template's slots (qwen tool format, replace_eos). */
const qwen = (extra: TemplateArgs): TemplateArgs =>
  chatml({
    function: { slots: [CHATML_ASSISTANT], toolFormat: "qwen" },
    observation: [QWEN_OBS],
    toolFormat: "qwen",
    replaceEos: true,
    ...extra,
  });
/** The llama3 template's slots. */
const llama3: TemplateArgs = {
  user: [LLAMA3_USER],
  assistant: ["{{content}}<|eot_id|>"],
  system: ["<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>"],
  function: { slots: ["{{content}}<|eot_id|>"], toolFormat: "llama3" },
  observation: [
    "<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  ],
  toolFormat: "llama3",
  prefix: [BOS],
  stopWords: ["<|eot_id|>", "<|eom_id|>"],
  replaceEos: true,
};
/** The mistral template's slots (tokenizer v3, spaces after [INST] / [TOOL_CALLS] / [TOOL_RESULTS]). */
const mistral: TemplateArgs = {
  user: ["[INST] {{content}}[/INST]"],
  assistant: [" {{content}}", EOS],
  system: ["{{content}}\n\n"],
  function: { slots: ["[TOOL_CALLS] {{content}}", EOS], toolFormat: "mistral" },
  observation: ['[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: "mistral",
  prefix: [BOS],
  kind: "llama2",
};
/** The ministral template's slots (tekken: no spaces). */
const ministral: TemplateArgs = {
  user: ["[INST]{{content}}[/INST]"],
  system: ["{{content}}\n\n"],
  function: { slots: ["[TOOL_CALLS]{{content}}", EOS], toolFormat: "mistral" },
  observation: ['[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: "mistral",
  prefix: [BOS],
  kind: "llama2",
};
/** The glm4 template's slots (glm4v and glm4_5v add `</answer>` and differ in tool format). */
const glm4 = (toolFormat: string): TemplateArgs => ({
  user: ["<|user|>\n{{content}}<|assistant|>"],
  assistant: ["\n{{content}}"],
  system: ["<|system|>\n{{content}}"],
  function: { slots: ["{{content}}"], toolFormat },
  observation: ["<|observation|>\n{{content}}<|assistant|>"],
  toolFormat,
  prefix: ["[gMASK]<sop>"],
  stopWords: ["<|user|>", "<|observation|>", "</answer>"],
  efficientEos: true,
  kind: "reasoning",
});
const vicuna: TemplateArgs = { user: [VICUNA_USER], defaultSystem: VICUNA_SYSTEM };
const yi: TemplateArgs = chatml({});

registerTemplate("dots_ocr", {
  user: ["<|user|>{{content}}<|endofuser|><|assistant|>"],
  assistant: ["{{content}}<|endofassistant|>"],
  system: ["<|system|>{{content}}<|endofsystem|>\n"],
  stopWords: ["<|endofassistant|>"],
  efficientEos: true,
});
registerTemplate("ernie_vl", {
  user: ["User: {{content}}"],
  assistant: ["\nAssistant: {{content}}<|end_of_sentence|>"],
  system: ["{{content}}\n"],
  stopWords: ["<|end_of_sentence|>"],
  replaceEos: true,
  replaceJinjaTemplate: true,
  kind: "reasoning",
});
registerTemplate("glm4v", glm4("glm4"));
registerTemplate("glm4_5v", glm4("glm4_moe"));
registerTemplate("granite3_vision", {
  user: ["<|user|>\n{{content}}\n<|assistant|>\n"],
  system: ["<|system|>\n{{content}}\n"],
  defaultSystem: VICUNA_SYSTEM,
});
registerTemplate(
  "intern_vl",
  chatml({
    prefix: [BOS],
    defaultSystem:
      "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
  }),
);
registerTemplate("intern_s1", chatml({ prefix: [BOS] }));
registerTemplate("keye_vl", qwen({ kind: "reasoning" }));
registerTemplate("kimi_vl", {
  user: ["<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>"],
  assistant: ["{{content}}<|im_end|>"],
  system: ["<|im_system|>system<|im_middle|>{{content}}<|im_end|>"],
  defaultSystem: "You are a helpful assistant",
  stopWords: ["<|im_end|>"],
  thoughtWords: ["◁think▷", "◁/think▷"],
  kind: "reasoning",
});
registerTemplate("llava", vicuna);
registerTemplate("llava_next", vicuna);
registerTemplate("llava_next_llama3", llama3);
registerTemplate("llava_next_mistral", mistral);
registerTemplate("llava_next_qwen", qwen({ defaultSystem: "You are a helpful assistant." }));
registerTemplate("llava_next_yi", yi);
registerTemplate("llava_next_video", vicuna);
registerTemplate("llava_next_video_mistral", mistral);
registerTemplate("llava_next_video_yi", yi);
registerTemplate(
  "mimo_vl",
  qwen({ defaultSystem: "You are MiMo, an AI assistant developed by Xiaomi.", kind: "reasoning" }),
);
registerTemplate("minicpm_v", chatml({ defaultSystem: "You are a helpful assistant." }));
registerTemplate(
  "minicpm_o",
  chatml({
    defaultSystem: "You are a helpful assistant. You can accept audio and text input and output voice and text.",
  }),
);
registerTemplate("ministral3", ministral);
registerTemplate("mllama", llama3);
registerTemplate("paligemma", { user: ["{{content}}\n"], prefix: [BOS], kind: "llama2" });
// LF gives paligemma_chat no format_system, so its system slot is `{{content}}` (gemma's is `{{content}}\n\n`)
registerTemplate("paligemma_chat", {
  user: [GEMMA_USER],
  assistant: ["{{content}}<end_of_turn>\n"],
  observation: [GEMMA_OBS],
  prefix: [BOS],
  stopWords: ["<end_of_turn>"],
  replaceEos: true,
  kind: "llama2",
});
registerTemplate("pixtral", ministral);
registerTemplate("qwen2_audio", chatml({ defaultSystem: "You are a helpful assistant.", replaceEos: true }));
registerTemplate("qwen2_omni", qwen({ defaultSystem: "You are a helpful assistant." }));
registerTemplate("qwen3_omni", qwen({ kind: "reasoning" }));
registerTemplate("qwen3_omni_nothink", qwen({}));
registerTemplate("video_llava", vicuna);
registerTemplate("yi_vl", {
  user: ["### Human: {{content}}\n### Assistant:"],
  assistant: ["{{content}}\n"],
  defaultSystem: "This is a chat between an inquisitive human and an AI assistant. " +
    "Assume the role of the AI assistant. Read all the images carefully, " +
    "and respond to the human's questions with informative, helpful, detailed and polite answers. " +
    "这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。" +
    "仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。\n\n",
  stopWords: ["###"],
  efficientEos: true,
});
