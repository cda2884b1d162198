/**
 * Chat requests as LLaMA-Factory's API reads them (`api/chat.py`): a leading system message is taken out, the
 * rest must alternate user|tool and assistant|function with an odd count (else 400 "Only supports u/a/u/a/u..."),
 * `tool` becomes `observation`, an assistant's `tool_calls` become a function message, and tools are passed to the
 * template as JSON. Generation settings map as LF maps them (`presence_penalty` → repetition_penalty, `max_tokens`
 * → max_new_tokens, `n` answers, `stop` strings). Content parts other than text are refused (no images here).
 * @module
 */
import type { ChatOptions, TemplateMessage } from "../engine/mod.ts";
import { badRequest, Fields } from "./http.ts";

const ROLES = ["user", "assistant", "system", "function", "tool"] as const;
const ROLE_MAPPING: Record<string, string> = { tool: "observation" };

function contentOf(m: Record<string, unknown>, where: string): string {
  const c = m.content;
  if (typeof c === "string") return c;
  if (c === undefined || c === null) return "";
  if (!Array.isArray(c)) throw badRequest(`${where}.content`, `expected a string or a list of parts, got ${typeof c}`);
  return c.map((part, k) => {
    const p = part as Record<string, unknown>;
    if (p?.type !== "text" || typeof p.text !== "string") {
      throw badRequest(
        `${where}.content[${k}]`,
        `only {"type": "text", "text": ...} parts are supported, got ${JSON.stringify(p?.type)}`,
      );
    }
    return p.text;
  }).join("");
}

/** The conversation of a chat request: template messages and the system text (LF's `_process_request`). */
export function parseMessages(value: unknown): { messages: TemplateMessage[]; system: string | null } {
  if (!Array.isArray(value) || value.length === 0) {
    throw badRequest("messages", "Invalid length: expected a non-empty list of messages");
  }
  const items = value.map((m, i) => {
    const where = `messages[${i}]`;
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw badRequest(where, "expected an object");
    const role = (m as Record<string, unknown>).role;
    if (typeof role !== "string" || !(ROLES as readonly string[]).includes(role)) {
      throw badRequest(`${where}.role`, `expected one of ${ROLES.join(", ")}, got ${JSON.stringify(role)}`);
    }
    return { m: m as Record<string, unknown>, role, where };
  });
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
    if (role === "assistant" && Array.isArray(calls) && calls.length) {
      const list = calls.map((c, k) => {
        const f = (c as { function?: { name?: unknown; arguments?: unknown } })?.function;
        if (typeof f?.name !== "string") {
          throw badRequest(`${where}.tool_calls[${k}].function.name`, "expected a string");
        }
        return { name: f.name, arguments: f.arguments };
      });
      return { role: "function", content: JSON.stringify(list) };
    }
    return { role: ROLE_MAPPING[role] ?? role, content: contentOf(m, where) };
  });
  return { messages, system };
}

/** The `tools` of a request as the template takes them (a JSON list of function definitions), or null. */
export function parseTools(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) throw badRequest("tools", 'expected a list of {type: "function", function: {...}}');
  if (!value.length) return null;
  return JSON.stringify(value.map((t, i) => {
    const f = (t as { function?: unknown })?.function;
    if (typeof f !== "object" || f === null) throw badRequest(`tools[${i}].function`, "expected an object");
    return f;
  }));
}

/** The OpenAI request's generation settings, mapped as LF maps them. */
export function openAiOptions(f: Fields): ChatOptions & { n: number; stream: boolean } {
  return {
    doSample: f.bool("do_sample"),
    temperature: f.num("temperature", { min: 0, max: 2 }),
    topP: f.num("top_p", { gt: 0, max: 1 }),
    maxNewTokens: f.int("max_tokens", { min: 1 }) ?? f.int("max_completion_tokens", { min: 1 }),
    repetitionPenalty: f.num("presence_penalty", { gt: 0 }),
    stop: f.strings("stop", 16),
    seed: f.int("seed", { min: 0 }),
    n: f.int("n", { min: 1, max: 16 }) ?? 1,
    stream: f.bool("stream") ?? false,
  };
}

/** A session's generation settings (LF's GeneratingArguments names). */
export function generatingOptions(f: Fields): ChatOptions {
  return {
    doSample: f.bool("do_sample"),
    temperature: f.num("temperature", { min: 0 }),
    topP: f.num("top_p", { gt: 0, max: 1 }),
    topK: f.int("top_k", { min: 0 }),
    maxNewTokens: f.int("max_new_tokens", { min: 1 }),
    repetitionPenalty: f.num("repetition_penalty", { gt: 0 }),
    stop: f.strings("stop", 16),
    seed: f.int("seed", { min: 0 }),
  };
}
