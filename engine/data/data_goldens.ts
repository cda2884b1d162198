/**
 * Test helper: the goldens of fixtures/data_goldens/make_goldens.py (LLaMA-Factory's rules in Python on the real
 * tokenizers) and the tokenizers and templates they were made with.
 * @module
 */
import type { AlignedExample, Message } from "./aligned.ts";
import type { DataArgs, Stage } from "./process.ts";
import { type ChatTemplate, getTemplate } from "./template.ts";
import { loadTokenizer, type Tokenizer } from "./tokenizer.ts";

/** A golden example in aligned form (snake_case as written by Python). */
export interface GoldenExample {
  prompt: Message[];
  response: Message[];
  system: string;
  tools: string;
  kto_tag?: boolean;
}

/** Template options as the generator names them. */
export interface GoldenOptions {
  enable_thinking?: boolean | null;
  preserve_thinking?: boolean;
}

/** The goldens file. */
export interface DataGoldens {
  tokenizers: Record<string, string>;
  tool_date: string;
  infer_seqlen: number[][];
  knapsack: [number[], number, number[][]][];
  parse_template: Record<
    string,
    { prefix: string; user: string; assistant: string; system: string; default_system: string; reasoning: boolean }
  >;
  fixes: {
    template: string;
    tokenizer: string;
    eos: [string, number];
    pad: [string, number];
    bos: [string | null, number | null];
    vocab_size: number;
    stop_ids: number[];
  }[];
  encode: {
    template: string;
    options: GoldenOptions;
    conversation: string;
    multiturn: [number[], number[]][];
    oneturn?: [number[], number[]];
    multiturn_discarding?: [number[], number[]][];
    oneturn_text?: [string, string];
  }[];
  conversations: Record<string, GoldenExample>;
  examples: Record<string, GoldenExample[]>;
  process: {
    label: string;
    template: string;
    options: GoldenOptions;
    args: Record<string, string | number | boolean>;
    examples: string;
    records: Record<string, number[] | boolean>[];
  }[];
  /** Tool formats of template_tools_more.ts: the tool text of the golden tools, the text of one and of two calls. */
  tool_formats: Record<string, { tools: string; function: string | null; parallel: string | null }>;
}

const ROOT = new URL("../../", import.meta.url);

/** The parsed goldens. */
export const goldens: DataGoldens = JSON.parse(
  await Deno.readTextFile(new URL("fixtures/data_goldens/goldens.json", ROOT)),
);

/** Which tokenizer each golden template was run with. */
export const TEMPLATE_TOKENIZER: Record<string, string> = {
  llama3: "llama3",
  qwen3: "qwen3",
  qwen3_nothink: "qwen3",
  qwen: "qwen3",
  chatml: "qwen3",
  default: "qwen3",
  alpaca: "qwen3",
  gemma: "gemma3",
  empty: "qwen3",
  vicuna: "llama3",
  llama2: "llama3",
  mistral: "llama3",
  breeze: "llama3",
  // issue 16 (templates_registry_more.ts)
  dbrx: "qwen3",
  ernie: "qwen3",
  ernie_nothink: "llama3",
  gpt_oss: "qwen3",
  glmz1: "qwen3",
  granite4: "llama3",
  hunyuan: "qwen3",
  intern2: "llama3",
  mimo_v2: "qwen3",
  mistral_small: "llama3",
  moonlight: "qwen3",
  seed_coder: "llama3",
  telechat2: "qwen3",
  xuanyuan: "llama3",
  glm4_moe: "qwen3",
  minimax1: "llama3",
  minimax2: "qwen3",
  seed_oss: "llama3",
  bailing: "qwen3",
  bailing_v2: "qwen3",
  chatglm3: "gemma3",
  index: "llama3",
  phi_small: "llama3",
  yuan: "gemma3",
  gemma3n: "gemma3",
  // the text side of the multimodal templates (templates_registry_mm.ts; fixtures/data_goldens/templates_mm.py)
  dots_ocr: "qwen3",
  ernie_vl: "llama3",
  glm4v: "qwen3",
  glm4_5v: "qwen3",
  granite3_vision: "llama3",
  intern_vl: "llama3",
  intern_s1: "llama3",
  keye_vl: "qwen3",
  kimi_vl: "qwen3",
  llava: "llama3",
  llava_next: "llama3",
  llava_next_llama3: "llama3",
  llava_next_mistral: "llama3",
  llava_next_qwen: "qwen3",
  llava_next_yi: "qwen3",
  llava_next_video: "llama3",
  llava_next_video_mistral: "llama3",
  llava_next_video_yi: "qwen3",
  mimo_vl: "qwen3",
  minicpm_v: "qwen3",
  minicpm_o: "qwen3",
  ministral3: "llama3",
  mllama: "llama3",
  paligemma: "gemma3",
  paligemma_chat: "gemma3",
  pixtral: "llama3",
  qwen2_audio: "qwen3",
  qwen2_omni: "qwen3",
  qwen3_omni: "qwen3",
  qwen3_omni_nothink: "qwen3",
  video_llava: "llama3",
  yi_vl: "llama3",
  // LF's newest templates (templates_registry_latest.ts; fixtures/data_goldens/templates_latest.py)
  qwen3_5: "qwen3",
  qwen3_5_nothink: "qwen3",
  qwen3_6: "qwen3",
  gemma4: "gemma3",
  gemma4n: "gemma3",
  glm_ocr: "qwen3",
  glm4_7: "qwen3",
  aeva: "qwen3",
  hy3: "llama3",
  hunyuan_small: "llama3",
  hy_dense_1_8b: "llama3",
  hy_dense_7b: "llama3",
  lfm2: "qwen3",
  lfm2_vl: "qwen3",
  lighton_ocr: "qwen3",
  minicpm_v_4_6: "qwen3",
  moss_vl: "qwen3",
  phi4_mini: "llama3",
  youtu: "llama3",
  youtu_vl: "qwen3",
};

const loaded = new Map<string, Promise<Tokenizer>>();

/** A golden tokenizer by short name (qwen3, llama3, gemma3), loaded once. */
export function goldenTokenizer(name: string): Promise<Tokenizer> {
  const dir = new URL(goldens.tokenizers[name], ROOT).pathname;
  if (!loaded.has(name)) {
    loaded.set(
      name,
      loadTokenizer(dir).catch((e) => {
        throw new Error(`${dir}: ${(e as Error).message} (run \`npm install\` in the repository root)`, { cause: e });
      }),
    );
  }
  return loaded.get(name)!;
}

/** The golden date of the llama3 tool prompt. */
export const TOOL_DATE = new Date(2025, 0, 1);

/** The template a golden was made with, on its tokenizer. */
export async function goldenTemplate(name: string, options: GoldenOptions = {}): Promise<ChatTemplate> {
  return getTemplate(await goldenTokenizer(TEMPLATE_TOKENIZER[name]), {
    template: name,
    enableThinking: options.enable_thinking,
    preserveThinking: options.preserve_thinking,
    now: TOOL_DATE,
  });
}

/** A golden example as an {@link AlignedExample}. */
export function toAligned(e: GoldenExample, i: number): AlignedExample {
  return {
    prompt: e.prompt,
    response: e.response,
    system: e.system,
    tools: e.tools,
    ...(e.kto_tag === undefined ? {} : { ktoTag: e.kto_tag }),
    source: { dataset: "golden", file: "goldens.json", row: i + 1 },
  };
}

/** Golden arguments (snake_case) as {@link DataArgs}; `add_bos_token` defaults to false as in the generator. */
export function toDataArgs(a: Record<string, string | number | boolean>): DataArgs {
  return {
    stage: a.stage as Stage,
    cutoffLen: a.cutoff_len as number | undefined,
    trainOnPrompt: a.train_on_prompt as boolean | undefined,
    maskHistory: a.mask_history as boolean | undefined,
    packing: a.packing as boolean | undefined,
    neatPacking: a.neat_packing as boolean | undefined,
    addBosToken: (a.add_bos_token as boolean | undefined) ?? false,
  };
}
