/**
 * Chat requests as LLaMA-Factory's API reads them (`api/chat.py`): a leading system message is taken out, the
 * rest must alternate user|tool and assistant|function with an odd count (else 400 "Only supports u/a/u/a/u..."),
 * `tool` becomes `observation`, an assistant's `tool_calls` become a function message, and tools are passed to the
 * template as JSON. Generation settings map as LF maps them (`presence_penalty` → repetition_penalty, `max_tokens`
 * → max_new_tokens, `n` answers, `stop` strings). Content parts other than text are refused (no images here).
 * @module
 */
import type { z } from "../deps.ts";
import type { ChatOptions, TemplateMessage } from "../engine/mod.ts";
import { badRequest } from "./http.ts";
import type { ChatCompletionBody, GenerateBody, Messages, Tools } from "./schemas.ts";

const ROLE_MAPPING: Record<string, string> = { tool: "observation" };

type Message = z.output<typeof Messages>[number];

function contentOf(m: Message, where: string): string {
  const c = m.content;
  if (typeof c === "string") return c;
  if (c === undefined || c === null) return "";
  return c.map((p, k) => {
    if (p.type !== "text" || typeof p.text !== "string") {
      throw badRequest(
        `${where}.content[${k}]`,
        `only {"type": "text", "text": ...} parts are supported, got ${JSON.stringify(p.type)}`,
      );
    }
    return p.text;
  }).join("");
}

/**
 * The conversation of a chat request (its shape checked by the schema): template messages and the system text
 * (LF's `_process_request`).
 */
export function parseMessages(
  value: z.output<typeof Messages>,
): { messages: TemplateMessage[]; system: string | null } {
  const items = value.map((m, i) => ({ m, role: m.role, where: `messages[${i}]` }));
  let system: string | null = null;
  if (items[0].role === "system") system = contentOf(items.shift()!.m, "messages[0]");
  if (items.length % 2 === 0) {
    throw badRequest(
      "messages",
      "Only supports u/a/u/a/u...: expected an odd number of turns after the system message",
    );
  }
  const messages = items.map(({ m, role, where }, i) => {
    const want = i % 2 === 0 ? ["user", "tool"] : ["assistant", "function"];
    if (!want.includes(role)) {
      throw badRequest(`${where}.role`, `Invalid role: expected ${want.join(" or ")} at this turn, got ${role}`);
    }
    const calls = m.tool_calls;
    if (role === "assistant" && calls?.length) {
      const list = calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments }));
      return { role: "function", content: JSON.stringify(list) };
    }
    return { role: ROLE_MAPPING[role] ?? role, content: contentOf(m, where) };
  });
  return { messages, system };
}

/** The `tools` of a request as the template takes them (a JSON list of function definitions), or null. */
export function parseTools(value: z.output<typeof Tools>): string | null {
  if (!value?.length) return null;
  return JSON.stringify(value.map((t) => t.function));
}

/** The OpenAI request's generation settings, mapped as LF maps them. */
export function openAiOptions(
  b: z.output<typeof ChatCompletionBody>,
): ChatOptions & { n: number; stream: boolean; includeUsage: boolean } {
  return {
    doSample: b.do_sample ?? undefined,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    maxNewTokens: b.max_tokens ?? b.max_completion_tokens ?? undefined,
    topK: b.top_k ?? undefined,
    repetitionPenalty: b.repetition_penalty ?? b.presence_penalty ?? undefined,
    stop: typeof b.stop === "string" ? [b.stop] : b.stop ?? undefined,
    seed: b.seed ?? undefined,
    n: b.n ?? 1,
    stream: b.stream ?? false,
    includeUsage: b.stream_options?.include_usage ?? false,
  };
}

/** A session's generation settings (LF's GeneratingArguments names). */
export function generatingOptions(b: z.output<typeof GenerateBody>): ChatOptions {
  return {
    doSample: b.do_sample ?? undefined,
    temperature: b.temperature ?? undefined,
    topP: b.top_p ?? undefined,
    topK: b.top_k ?? undefined,
    maxNewTokens: b.max_new_tokens ?? undefined,
    repetitionPenalty: b.repetition_penalty ?? undefined,
    stop: typeof b.stop === "string" ? [b.stop] : b.stop ?? undefined,
    seed: b.seed ?? undefined,
  };
}
