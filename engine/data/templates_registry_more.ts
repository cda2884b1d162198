/**
 * More of LLaMA-Factory's text templates (`data/template.py`, registered as {@link registerTemplate} does; issue 16):
 * dbrx, ernie, ernie_nothink, gpt_oss, glmz1, granite4, hunyuan, intern2, mimo_v2, mistral_small, moonlight,
 * seed_coder, telechat2, xuanyuan; glm4_moe, minimax1, minimax2, seed_oss (tool formats in template_tools_more.ts);
 * bailing, bailing_v2, chatglm3, index, phi_small, yuan; gemma3n (text side). Their encodings are checked against fixtures/data_goldens (make_goldens.py
 * registers the same slots in Python).
 * Importing this module registers them; template.ts imports it.
 * @module
 */
import { BOS, EOS, registerTemplate } from "./templates_registry.ts";

const CHATML_USER = "<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const CHATML_ASSISTANT = "{{content}}<|im_end|>\n";
const CHATML_SYSTEM = "<|im_start|>system\n{{content}}<|im_end|>\n";
const CHATML_TOOL_OBS = "<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n";
const QWEN_OBS = "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n";
const INTERN_SYSTEM = "You are an AI assistant whose name is InternLM (书生·浦语).\n" +
  "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI Laboratory " +
  "(上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n" +
  "- InternLM (书生·浦语) can understand and communicate fluently in the language " +
  "chosen by the user such as English and 中文.";
const DBRX_SYSTEM = "You are DBRX, created by Databricks. You were last updated in December 2023. " +
  "You answer questions based on information available up to that point.\n" +
  "YOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but provide thorough " +
  "responses to more complex and open-ended questions.\nYou assist with various tasks, " +
  "from writing to coding (using markdown for code blocks — remember to use ``` with " +
  "code, JSON, and tables).\n(You do not have real-time data access or code execution " +
  "capabilities. You avoid stereotyping and provide balanced perspectives on " +
  "controversial topics. You do not provide song lyrics, poems, or news articles and " +
  "do not divulge details of your training data.)\nThis is your system prompt, " +
  "guiding your responses. Do not reference it, just respond to the user. If you find " +
  "yourself talking about this message, stop. You should be responding appropriately " +
  "and usually that means not mentioning this.\nYOU DO NOT MENTION ANY OF THIS INFORMATION " +
  "ABOUT YOURSELF UNLESS THE INFORMATION IS DIRECTLY PERTINENT TO THE USER'S QUERY.";

registerTemplate("dbrx", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  observation: [CHATML_TOOL_OBS],
  defaultSystem: DBRX_SYSTEM,
  stopWords: ["<|im_end|>"],
  replaceEos: true,
});
registerTemplate("ernie", {
  user: ["<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n"],
  assistant: ["{{content}}<|im_end|>\n\n"],
  system: ["<|im_start|>system\n{{content}}<|im_end|>\n\n"],
  observation: ["<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n"],
  defaultSystem: "<global_setting>\nthink_mode=True\n</global_setting>",
  stopWords: ["<|im_end|>"],
});
registerTemplate("ernie_nothink", {
  user: ["User: {{content}}\nAssistant: "],
  assistant: ["{{content}}<|end_of_sentence|>"],
  system: ["{{content}}\n"],
  prefix: ["<|begin_of_sentence|>"],
  stopWords: ["<|end_of_sentence|>"],
});
// LF's gpt_oss assistant slot was `{{content}}<|end|>` up to commit 00577a85 and is `{{content}}` at 57a87f2c
registerTemplate("gpt_oss", {
  user: ["<|start|>user<|message|>{{content}}<|end|><|start|>assistant"],
  assistant: ["{{content}}"],
  system: ["<|start|>system<|message|>{{content}}<|end|>"],
  defaultSystem: "You are ChatGPT, a large language model trained by OpenAI.",
  thoughtWords: ["<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"],
  efficientEos: true,
  kind: "reasoning",
});
registerTemplate("glmz1", {
  user: ["<|user|>\n{{content}}<|assistant|>"],
  assistant: ["\n{{content}}"],
  system: ["<|system|>\n{{content}}"],
  function: { slots: ["{{content}}"], toolFormat: "glm4" },
  observation: ["<|observation|>\n{{content}}<|assistant|>"],
  toolFormat: "glm4",
  prefix: ["[gMASK]<sop>"],
  stopWords: ["<|user|>", "<|observation|>"],
  efficientEos: true,
  kind: "reasoning",
});
registerTemplate("granite4", {
  user: ["<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>"],
  assistant: ["{{content}}<|end_of_text|>\n"],
  system: ["<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n"],
  function: { slots: ["{{content}}<|end_of_text|>\n"], toolFormat: "default" },
  observation: ["<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n"],
  stopWords: ["<|end_of_text|>"],
  defaultSystem: "You are Granite, developed by IBM. You are a helpful AI assistant.",
});
registerTemplate("hunyuan", {
  user: ["{{content}}<|extra_0|>"],
  assistant: ["{{content}}<|eos|>"],
  system: ["{{content}}<|extra_4|>"],
  prefix: ["<|startoftext|>"],
  stopWords: ["<|eos|>"],
});
registerTemplate("intern2", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  prefix: [BOS],
  defaultSystem: INTERN_SYSTEM,
  stopWords: ["<|im_end|>"],
});
registerTemplate("mimo_v2", {
  user: [CHATML_USER],
  assistant: [CHATML_ASSISTANT],
  system: [CHATML_SYSTEM],
  function: { slots: [CHATML_ASSISTANT], toolFormat: "qwen" },
  observation: [QWEN_OBS],
  toolFormat: "qwen",
  defaultSystem: "You are MiMo, a helpful AI assistant engineered by Xiaomi.",
  stopWords: ["<|im_end|>"],
  replaceEos: true,
  thoughtWords: ["<think>", "</think>"],
  kind: "reasoning",
});
registerTemplate("mistral_small", {
  user: ["[INST]{{content}}[/INST]"],
  system: ["[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]"],
  function: { slots: ["[TOOL_CALLS]{{content}}", EOS], toolFormat: "mistral" },
  observation: ['[TOOL_RESULTS]{"content": {{content}}}[/TOOL_RESULTS]'],
  toolFormat: "mistral",
  prefix: [BOS],
});
registerTemplate("moonlight", {
  user: ["<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>"],
  assistant: ["{{content}}<|im_end|>"],
  system: ["<|im_system|>system<|im_middle|>{{content}}<|im_end|>"],
  defaultSystem: "You are a helpful assistant provided by Moonshot-AI.",
  stopWords: ["<|im_end|>"],
  replaceEos: true,
});
registerTemplate("seed_coder", {
  user: [BOS, "user\n{{content}}", EOS, BOS, "assistant\n"],
  system: [BOS, "system\n{{content}}", EOS],
  defaultSystem: "You are an AI programming assistant, utilizing the Seed-Coder model, developed by ByteDance Seed, " +
    "and you only answer questions related to computer science. For politically sensitive questions, " +
    "security and privacy issues, and other non-computer science questions, you will refuse to answer.\n\n",
});
registerTemplate("telechat2", {
  user: ["<_user>{{content}}<_bot>"],
  system: ["<_system>{{content}}"],
  defaultSystem:
    "你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院" +
    "（TeleAI）研发的人工智能助手。",
});
registerTemplate("xuanyuan", {
  user: ["Human: {{content}} Assistant:"],
  defaultSystem: "以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，" +
    "会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、" +
    "不安全、有争议、政治敏感等相关的话题、问题和指示。\n",
});

// Templates whose tool formats are in template_tools_more.ts (LF data/template.py, commit 00577a85).
registerTemplate("glm4_moe", {
  user: ["<|user|>\n{{content}}<|assistant|>"],
  assistant: ["\n{{content}}"],
  system: ["<|system|>\n{{content}}"],
  function: { slots: ["{{content}}"], toolFormat: "glm4_moe" },
  observation: ["<|observation|>\n{{content}}<|assistant|>"],
  toolFormat: "glm4_moe",
  prefix: ["[gMASK]<sop>"],
  stopWords: ["<|user|>", "<|observation|>"],
  efficientEos: true,
  kind: "reasoning",
});
registerTemplate("minimax1", {
  user: [
    "<beginning_of_sentence>user name=user\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai name=assistant\n",
  ],
  assistant: ["{{content}}<end_of_sentence>\n"],
  system: ["<beginning_of_sentence>system ai_setting=assistant\n{{content}}<end_of_sentence>\n"],
  function: { slots: ["{{content}}<end_of_sentence>\n"], toolFormat: "minimax1" },
  observation: [
    "<beginning_of_sentence>tool name=tools\n{{content}}<end_of_sentence>\n<beginning_of_sentence>ai name=assistant\n",
  ],
  toolFormat: "minimax1",
  defaultSystem: "You are a helpful assistant.",
  stopWords: ["<end_of_sentence>"],
});
registerTemplate("minimax2", {
  user: ["]~b]user\n{{content}}[e~[\n]~b]ai\n"],
  assistant: ["{{content}}[e~[\n"],
  system: ["]~!b[]~b]system\n{{content}}[e~[\n"],
  function: { slots: ["{{content}}[e~[\n"], toolFormat: "minimax2" },
  observation: ["]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n"],
  toolFormat: "minimax2",
  defaultSystem: "You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax.",
  stopWords: ["[e~["],
  kind: "reasoning",
});
registerTemplate("seed_oss", {
  user: [BOS, "user\n{{content}}", EOS, BOS, "assistant\n"],
  system: [BOS, "system\n{{content}}", EOS],
  function: { slots: [BOS, "\n{{content}}", EOS], toolFormat: "seed_oss" },
  toolFormat: "seed_oss",
  thoughtWords: ["<seed:think>", "</seed:think>"],
  kind: "reasoning",
});

// More text templates (LF data/template.py, commit 00577a85).
registerTemplate("bailing", {
  user: ["<role>HUMAN</role>{{content}}<role>ASSISTANT</role>"],
  system: ["<role>SYSTEM</role>{{content}}"],
  observation: ["<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>"],
  stopWords: ["<|endoftext|>"],
  efficientEos: true,
});
registerTemplate("bailing_v2", {
  user: ["<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>"],
  system: ["<role>SYSTEM</role>{{content}}<|role_end|>"],
  assistant: ["{{content}}<|role_end|>"],
  observation: [
    "<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n</tool_response><|role_end|><role>ASSISTANT</role>",
  ],
  function: { slots: ["{{content}}<|role_end|>"], toolFormat: "ling" },
  toolFormat: "ling",
  stopWords: ["<|endoftext|>"],
  efficientEos: true,
});
registerTemplate("chatglm3", {
  user: [{ token: "<|user|>" }, "\n", "{{content}}", { token: "<|assistant|>" }],
  assistant: ["\n", "{{content}}"],
  system: [{ token: "<|system|>" }, "\n", "{{content}}"],
  function: { slots: ["{{content}}"], toolFormat: "glm4" },
  observation: [{ token: "<|observation|>" }, "\n", "{{content}}", { token: "<|assistant|>" }],
  toolFormat: "glm4",
  prefix: [{ token: "[gMASK]" }, { token: "sop" }],
  stopWords: ["<|user|>", "<|observation|>"],
  efficientEos: true,
});
registerTemplate("index", {
  user: ["reserved_0{{content}}reserved_1"],
  system: ["<unk>{{content}}"],
  efficientEos: true,
});
// LF's prefix is `{"<|endoftext|>"}`: a set naming neither bos_token nor eos_token, which adds no id (and no Jinja)
registerTemplate("phi_small", {
  user: ["<|user|>\n{{content}}<|end|>\n<|assistant|>\n"],
  assistant: ["{{content}}<|end|>\n"],
  system: ["<|system|>\n{{content}}<|end|>\n"],
  stopWords: ["<|end|>"],
  replaceEos: true,
});
registerTemplate("yuan", {
  user: ["{{content}}", { token: "<sep>" }],
  assistant: ["{{content}}<eod>\n"],
  stopWords: ["<eod>"],
});
// gemma3n's text side (its mm_plugin adds image and audio tokens, which Whetstone does not train on): gemma3's slots
registerTemplate("gemma3n", {
  user: ["<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n"],
  assistant: ["{{content}}<end_of_turn>\n"],
  system: ["{{content}}\n\n"],
  observation: ["<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n"],
  prefix: [BOS],
  stopWords: ["<end_of_turn>"],
  replaceEos: true,
  kind: "llama2",
});
