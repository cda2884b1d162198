/**
 * The aligned example: what every dataset converter produces (LLaMA-Factory's `_prompt`, `_response`, `_system`,
 * `_tools` columns) and what templates and tokenization consume.
 * @module
 */

/** A message role (LLaMA-Factory's `Role`). */
export type Role = "user" | "assistant" | "system" | "function" | "observation";

/** One message of a conversation. */
export interface Message {
  role: Role;
  content: string;
}

/** One example as LLaMA-Factory's converters align it (_prompt, _response, _system, _tools). */
export interface AlignedExample {
  /** Alternating user/assistant... ending with a user (or observation) turn. */
  prompt: Message[];
  /**
   * sft: [assistant]; pairwise: [chosen, rejected]; kto: [assistant] with {@linkcode AlignedExample.ktoTag}; pt: []
   * (the text is `prompt[0].content`, role user).
   */
  response: Message[];
  system: string;
  /** JSON string of tool schemas, "" when none. */
  tools: string;
  /** KTO only: whether the response is desirable. */
  ktoTag?: boolean;
  /** Where the example came from, for error messages and previews (`row` counts from 1 within `file`). */
  source: { dataset: string; file: string; row: number };
}
