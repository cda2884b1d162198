/**
 * LLaMA-Factory's chat templates (`data/template.py`, commit ff6d4d12 and its successors), as data: slot lists per
 * role, default system prompt, stop words, thought / tool-call words and flags. {@link registerTemplate} fills the
 * unset formatters exactly as LF's `register_template` does (e.g. the system formatter defaults to `{{content}}`, not to
 * the user formatter; the observation formatter defaults to the user formatter; the function formatter to the
 * assistant slots with the `default` tool format).
 *
 * This module registers the first of them; templates_registry_more.ts, templates_registry_mm.ts (the text side of
 * the multimodal ones) and templates_registry_latest.ts add the rest: every name of LF's template.py at commit 57a87f2c.
 * @module
 */

/**
 * A slot element: text (with `{{content}}` / `{{idx}}` placeholders), the tokenizer's BOS or EOS id (LF's
 * `{"bos_token"}` / `{"eos_token"}` sets), or the id of one named token (LF's `{"token": "..."}`).
 */
export type Slot = string | { readonly special: "bos_token" | "eos_token" } | { readonly token: string };

/** LF's `{"bos_token"}` slot. */
export const BOS: Slot = { special: "bos_token" };
/** LF's `{"eos_token"}` slot. */
export const EOS: Slot = { special: "eos_token" };

/** How a template places the system prompt and handles thoughts (LF's template classes). */
export type TemplateKind = "plain" | "llama2" | "reasoning";

/** A template: LF's `Template` dataclass fields. */
export interface TemplateSpec {
  readonly name: string;
  readonly user: readonly Slot[];
  readonly assistant: readonly Slot[];
  readonly system: readonly Slot[];
  /** `format_function`: slots and the tool format its calls are written in. */
  readonly function: { readonly slots: readonly Slot[]; readonly toolFormat: string };
  readonly observation: readonly Slot[];
  /** `format_tools`: the tool format of the tool list appended to the system text. */
  readonly toolFormat: string;
  readonly prefix: readonly Slot[];
  readonly defaultSystem: string;
  readonly stopWords: readonly string[];
  readonly thoughtWords: readonly [string, string];
  readonly toolCallWords: readonly [string, string];
  readonly efficientEos: boolean;
  readonly replaceEos: boolean;
  readonly replaceJinjaTemplate: boolean;
  /** Reasoning templates: true (thoughts trained), false (empty thought in the prompt), null (mixed). */
  readonly enableThinking: boolean | null;
  readonly preserveThinking: boolean;
  readonly kind: TemplateKind;
  /** LF's `Glm47ReasoningTemplate`: the empty thought is the closing thought word alone. */
  readonly emptyThoughtCloseOnly: boolean;
  /** LF's `MossVLTemplate`: without a system prompt the tool text loses its leading newlines. */
  readonly toolTextLstripWithoutSystem: boolean;
  /** A `format_tools` that is a `StringFormatter` with this slot: the raw `tools` text replaces `{{content}}`. */
  readonly toolsSlot: string | null;
}

/** The arguments of {@link registerTemplate}; unset formatters get LF's defaults. */
export interface TemplateArgs {
  user?: Slot[];
  assistant?: Slot[];
  system?: Slot[];
  function?: { slots: Slot[]; toolFormat: string };
  observation?: Slot[];
  toolFormat?: string;
  prefix?: Slot[];
  defaultSystem?: string;
  stopWords?: string[];
  thoughtWords?: [string, string];
  toolCallWords?: [string, string];
  efficientEos?: boolean;
  replaceEos?: boolean;
  replaceJinjaTemplate?: boolean;
  enableThinking?: boolean | null;
  kind?: TemplateKind;
  emptyThoughtCloseOnly?: boolean;
  toolTextLstripWithoutSystem?: boolean;
  toolsSlot?: string;
}

/** The registered templates by name. */
export const TEMPLATES: Map<string, TemplateSpec> = new Map();

/** Builds a spec with LF's `register_template` defaults (does not register it). */
export function makeTemplate(name: string, a: TemplateArgs): TemplateSpec {
  const efficientEos = a.efficientEos ?? false;
  const defaultSlots: Slot[] = efficientEos ? ["{{content}}"] : ["{{content}}", EOS];
  return {
    name,
    user: a.user ?? ["{{content}}"],
    assistant: a.assistant ?? defaultSlots,
    system: a.system ?? ["{{content}}"],
    function: a.function ?? { slots: a.assistant ?? defaultSlots, toolFormat: "default" },
    observation: a.observation ?? a.user ?? ["{{content}}"],
    toolFormat: a.toolFormat ?? "default",
    prefix: a.prefix ?? [],
    defaultSystem: a.defaultSystem ?? "",
    stopWords: a.stopWords ?? [],
    thoughtWords: a.thoughtWords ?? ["<think>\n", "\n</think>\n\n"],
    toolCallWords: a.toolCallWords ?? ["<tool_call>", "</tool_call>"],
    efficientEos,
    replaceEos: a.replaceEos ?? false,
    replaceJinjaTemplate: a.replaceJinjaTemplate ?? false,
    enableThinking: a.enableThinking === undefined ? true : a.enableThinking,
    preserveThinking: false,
    kind: a.kind ?? "plain",
    emptyThoughtCloseOnly: a.emptyThoughtCloseOnly ?? false,
    toolTextLstripWithoutSystem: a.toolTextLstripWithoutSystem ?? false,
    toolsSlot: a.toolsSlot ?? null,
  };
}

/** LF's `register_template`: throws when the name exists. */
export function registerTemplate(name: string, a: TemplateArgs): void {
  if (TEMPLATES.has(name)) throw new Error(`Template ${name} already exists.`);
  TEMPLATES.set(name, makeTemplate(name, a));
}

const CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const CHATML_ASSISTANT = "{{content}}<|im_end|>\n";
const CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n";
const CHATML_TOOL_OBS = "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const QWEN_OBS = "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
const VICUNA_SYSTEM = "A chat between a curious user and an artificial intelligence assistant. " +
  "The assistant gives helpful, detailed, and polite answers to the user's questions.";
const LLAMA3_USER = "<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>" +
  "<|start_header_id|>assistant<|end_header_id|>\n\n";
const GEMMA_USER = "<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n";
const GEMMA_OBS = "<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n";

/** The qwen family's shared slots (qwen, qwen3, qwen3_nothink, ...). */
function qwenLike(extra: TemplateArgs): TemplateArgs {
  return {
    user: [CHATML_USER],
    assistant: [CHATML_ASSISTANT],
    system: [CHATML_SYSTEM],
    function: { slots: [CHATML_ASSISTANT], toolFormat: "qwen" },
    observation: [QWEN_OBS],
    toolFormat: "qwen",
    stopWords: ["<|im_end|>"],
    replaceEos: true,
    ...extra,
  };
}

registerTemplate("alpaca", {
  user: ["### Instruction:\n{{content}}\n\n### Response:\n"],
  assistant: ["{{content}}", EOS, "\n\n"],
  defaultSystem:
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n",
  replaceJinjaTemplate: true,
});
registerTemplate("breeze", { user: ["[INST] {{content}} [/INST] "], prefix: [BOS], efficientEos: true });
registerTemplate("chatml", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  stopWords: ["<|im_end|>", "<|im_start|>"],
  replaceEos: true,
  replaceJinjaTemplate: true,
});
registerTemplate("chatml_de", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  defaultSystem: "Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
  stopWords: ["<|im_end|>", "<|im_start|>"],
  replaceEos: true,
  replaceJinjaTemplate: true,
});
registerTemplate("cohere", {
  user: [
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
  ],
  system: ["<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>"],
  prefix: [BOS],
});
registerTemplate("cpm4", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  prefix: [BOS],
  stopWords: ["<|im_end|>"],
});
registerTemplate("deepseek", {
  user: ["User: {{content}}\n\nAssistant:"],
  system: ["{{content}}\n\n"],
  prefix: [BOS],
});
registerTemplate("deepseek3", { user: ["<｜User｜>{{content}}<｜Assistant｜>"], prefix: [BOS] });
registerTemplate("deepseekr1", { user: ["<｜User｜>{{content}}<｜Assistant｜>"], prefix: [BOS], kind: "reasoning" });
registerTemplate("deepseekcoder", {
  user: ["### Instruction:\n{{content}}\n### Response:"],
  assistant: ["\n{{content}}\n<|EOT|>\n"],
  prefix: [BOS],
  defaultSystem: "You are an AI programming assistant, utilizing the DeepSeek Coder model, " +
    "developed by DeepSeek Company, and you only answer questions related to computer science. " +
    "For politically sensitive questions, security and privacy issues, " +
    "and other non-computer science questions, you will refuse to answer.\n",
});
registerTemplate("default", {
  user: ["Human: {{content}}", EOS, "\nAssistant:"],
  assistant: ["{{content}}", EOS, "\n"],
  system: ["System: {{content}}", EOS, "\n"],
  replaceJinjaTemplate: true,
});
registerTemplate("empty", { assistant: ["{{content}}"] });
registerTemplate("exaone", {
  user: ["[|user|]{{content}}\n[|assistant|]"],
  assistant: ["{{content}}", EOS, "\n"],
  system: ["[|system|]{{content}}[|endofturn|]\n"],
});
registerTemplate("falcon", { user: ["User: {{content}}\nFalcon:"], assistant: ["{{content}}\n"], efficientEos: true });
registerTemplate("falcon_h1", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  prefix: [BOS],
  stopWords: ["<|im_end|>", "<|end_of_text|>"],
});
registerTemplate("fewshot", { assistant: ["{{content}}\n\n"], efficientEos: true, replaceJinjaTemplate: true });
registerTemplate("gemma", {
  user: [GEMMA_USER],
  assistant: ["{{content}}<end_of_turn>\n"],
  system: ["{{content}}\n\n"],
  observation: [GEMMA_OBS],
  prefix: [BOS],
  stopWords: ["<end_of_turn>"],
  replaceEos: true,
  kind: "llama2",
});
registerTemplate("gemma2", {
  user: [GEMMA_USER],
  assistant: ["{{content}}<end_of_turn>\n"],
  system: ["{{content}}\n\n"],
  observation: [GEMMA_OBS],
  prefix: [BOS],
  stopWords: ["<eos>", "<end_of_turn>"],
  efficientEos: true,
  kind: "llama2",
});
registerTemplate("gemma3", {
  user: [GEMMA_USER],
  assistant: ["{{content}}<end_of_turn>\n"],
  system: ["{{content}}\n\n"],
  observation: [GEMMA_OBS],
  prefix: [BOS],
  stopWords: ["<end_of_turn>"],
  replaceEos: true,
  kind: "llama2",
});
registerTemplate("glm4", {
  user: ["<|user|>\n{{content}}<|assistant|>"],
  assistant: ["\n{{content}}"],
  system: ["<|system|>\n{{content}}"],
  function: { slots: ["{{content}}"], toolFormat: "glm4" },
  observation: ["<|observation|>\n{{content}}<|assistant|>"],
  toolFormat: "glm4",
  prefix: ["[gMASK]<sop>"],
  stopWords: ["<|user|>", "<|observation|>"],
  efficientEos: true,
});
registerTemplate("granite3", {
  user: ["<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"],
  assistant: ["{{content}}<|end_of_text|>\n"],
  system: ["<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n"],
});
registerTemplate("llama2", {
  user: [BOS, "[INST] {{content}} [/INST]"],
  system: ["<<SYS>>\n{{content}}\n<</SYS>>\n\n"],
  kind: "llama2",
});
registerTemplate("llama2_zh", {
  user: [BOS, "[INST] {{content}} [/INST]"],
  system: ["<<SYS>>\n{{content}}\n<</SYS>>\n\n"],
  defaultSystem: "You are a helpful assistant. 你是一个乐于助人的助手。",
  kind: "llama2",
});
registerTemplate("llama3", {
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
});
registerTemplate("llama4", {
  user: ["<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n"],
  assistant: ["{{content}}<|eot|>"],
  system: ["<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>"],
  function: { slots: ["{{content}}<|eot|>"], toolFormat: "llama3" },
  observation: [
    "<|header_start|>ipython<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n",
  ],
  toolFormat: "llama3",
  prefix: [BOS],
  stopWords: ["<|eot|>", "<|eom|>"],
  replaceEos: true,
});
registerTemplate("mimo", qwenLike({ defaultSystem: "You are a helpful assistant.", kind: "reasoning" }));
registerTemplate("ministral", {
  user: ["[INST]{{content}}[/INST]"],
  system: ["{{content}}\n\n"],
  function: { slots: ["[TOOL_CALLS]{{content}}", EOS], toolFormat: "mistral" },
  observation: ['[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: "mistral",
  prefix: [BOS],
  kind: "llama2",
});
registerTemplate("mistral", {
  user: ["[INST] {{content}}[/INST]"],
  assistant: [" {{content}}", EOS],
  system: ["{{content}}\n\n"],
  function: { slots: ["[TOOL_CALLS] {{content}}", EOS], toolFormat: "mistral" },
  observation: ['[TOOL_RESULTS] {"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: "mistral",
  prefix: [BOS],
  kind: "llama2",
});
registerTemplate("olmo", { user: ["<|user|>\n{{content}}<|assistant|>\n"], prefix: [EOS] });
registerTemplate("openchat", {
  user: ["GPT4 Correct User: {{content}}", EOS, "GPT4 Correct Assistant:"],
  prefix: [BOS],
});
registerTemplate("openchat-3.6", {
  user: [
    "<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n{{content}}<|eot_id|>" +
    "<|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n",
  ],
  prefix: [BOS],
  stopWords: ["<|eot_id|>"],
});
registerTemplate("opencoder", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  defaultSystem: "You are OpenCoder, created by OpenCoder Team.",
  stopWords: ["<|im_end|>"],
});
registerTemplate("phi", {
  user: ["<|user|>\n{{content}}<|end|>\n<|assistant|>\n"],
  assistant: ["{{content}}<|end|>\n"],
  system: ["<|system|>\n{{content}}<|end|>\n"],
  stopWords: ["<|end|>"],
  replaceEos: true,
});
registerTemplate("phi4", {
  user: ["<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>"],
  assistant: ["{{content}}<|im_end|>"],
  system: ["<|im_start|>system<|im_sep|>{{content}}<|im_end|>"],
  stopWords: ["<|im_end|>"],
  replaceEos: true,
});
registerTemplate(
  "qwen",
  qwenLike({ defaultSystem: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." }),
);
registerTemplate("qwen3", qwenLike({ kind: "reasoning" }));
registerTemplate("qwen3_nothink", qwenLike({}));
registerTemplate("qwen2_vl", qwenLike({ defaultSystem: "You are a helpful assistant." }));
registerTemplate("qwen3_vl", qwenLike({ kind: "reasoning" }));
registerTemplate("qwen3_vl_nothink", qwenLike({}));
registerTemplate("sailor", {
  user: ["<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n"],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  defaultSystem: "You are an AI assistant named Sailor created by Sea AI Lab. " +
    "Your answer should be friendly, unbiased, faithful, informative and detailed.",
  stopWords: ["<|im_end|>"],
});
registerTemplate("smollm", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
});
registerTemplate("smollm2", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
  defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
});
registerTemplate("solar", {
  user: ["### User:\n{{content}}\n\n### Assistant:\n"],
  system: ["### System:\n{{content}}\n\n"],
  efficientEos: true,
});
registerTemplate("starchat", {
  user: ["<|user|>\n{{content}}<|end|>\n<|assistant|>"],
  assistant: ["{{content}}<|end|>\n"],
  system: ["<|system|>\n{{content}}<|end|>\n"],
  stopWords: ["<|end|>"],
});
registerTemplate("vicuna", {
  user: ["USER: {{content}} ASSISTANT:"],
  defaultSystem: VICUNA_SYSTEM,
  replaceJinjaTemplate: true,
});
registerTemplate("yi", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  stopWords: ["<|im_end|>"],
});
registerTemplate("zephyr", {
  user: ["<|user|>\n{{content}}", EOS, "<|assistant|>\n"],
  system: ["<|system|>\n{{content}}", EOS],
  defaultSystem: "You are Zephyr, a helpful assistant.",
});
