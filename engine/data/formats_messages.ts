/**
 * The sharegpt and openai converters (LLaMA-Factory's `SharegptDatasetConverter` and `OpenAIDatasetConverter`); see
 * formats.ts for the rules.
 * @module
 */
import type { Message, Role } from "./aligned.ts";
import type { Row } from "./files.ts";
import { type Converted, needs, pyJsonDumps, RowReader, source, type Stage, typeName } from "./formats_row.ts";

/** The role a tag maps to, among the dataset's defined tags. */
function tagRoles(r: RowReader): Map<string, Role> {
  const t = r.attr.tags;
  const map = new Map<string, Role>();
  const add = (tag: string | undefined, role: Role) => tag !== undefined && !map.has(tag) && map.set(tag, role);
  add(t.user_tag, "user");
  add(t.assistant_tag, "assistant");
  add(t.observation_tag, "observation");
  add(t.function_tag, "function");
  add(t.system_tag, "system");
  return map;
}

interface RawMessage {
  role: unknown;
  content: unknown;
  obj: Row;
}

/** The messages column as a list of objects with a string role, checked; content is checked by the caller. */
function rawMessages(r: RowReader, key: "messages"): RawMessage[] {
  const col = r.attr.columns[key];
  if (col === undefined) throw r.error(`formatting ${r.attr.formatting} needs columns.messages`);
  const v = r.value(key, true);
  if (!Array.isArray(v)) {
    throw r.error(`column ${JSON.stringify(col)} should be a list of messages, got ${typeName(v)}`, col);
  }
  const roleTag = r.attr.tags.role_tag, contentTag = r.attr.tags.content_tag;
  if (roleTag === undefined || contentTag === undefined) {
    throw r.error(`dataset_info.json tags must name role_tag and content_tag (tags: ${JSON.stringify(r.attr.tags)})`);
  }
  return v.map((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      throw r.error(`${col}[${i}] should be a message object, got ${typeName(m)}`, col);
    }
    const msg = m as Row;
    if (typeof msg[roleTag] !== "string") {
      throw r.error(
        `${col}[${i}].${roleTag} should be a string role, got ${
          Object.hasOwn(msg, roleTag) ? typeName(msg[roleTag]) : "nothing (no such key)"
        }`,
        `${col}[${i}].${roleTag}`,
      );
    }
    return { role: msg[roleTag], content: msg[contentTag], obj: msg };
  });
}

function checkContent(r: RowReader, m: RawMessage, where: string): string {
  if (typeof m.content === "string") return m.content;
  const contentTag = r.attr.tags.content_tag!;
  throw r.error(
    `${where}.${contentTag} should be a string, got ${
      Object.hasOwn(m.obj, contentTag) ? typeName(m.content) : "nothing (no such key)"
    }`,
    `${where}.${contentTag}`,
  );
}

/** A chosen/rejected message object of a sharegpt preference row, or undefined when null/absent. */
function pairMessage(r: RowReader, key: "chosen" | "rejected", required: boolean): RawMessage | undefined {
  const v = r.value(key, required);
  if (v === undefined || v === null) return undefined;
  const col = r.attr.columns[key]!;
  const roleTag = r.attr.tags.role_tag!, contentTag = r.attr.tags.content_tag!;
  if (typeof v !== "object" || Array.isArray(v)) {
    throw r.error(
      `column ${JSON.stringify(col)} should be a message object {"${roleTag}": ..., "${contentTag}": ...}, got ${
        typeName(v)
      }`,
      col,
    );
  }
  const obj = v as Row;
  if (typeof obj[roleTag] !== "string") throw r.error(`${col}.${roleTag} should be a string role`, `${col}.${roleTag}`);
  const m = { role: obj[roleTag], content: obj[contentTag], obj };
  checkContent(r, m, col);
  return m;
}

/** Role order and count checks shared by sharegpt and openai (LF: "Invalid role tag" / "Invalid message count"). */
function checkOrder(messages: Message[], ranking: boolean): string | undefined {
  const odd: Role[] = ["user", "observation"], even: Role[] = ["assistant", "function"];
  for (let i = 0; i < messages.length; i++) {
    if (!(i % 2 === 0 ? odd : even).includes(messages[i].role)) {
      return `invalid role order: message ${i + 1} (after the system message) is ${messages[i].role}, expected ${
        (i % 2 === 0 ? odd : even).join(" or ")
      }`;
    }
  }
  if (!ranking && messages.length % 2 !== 0) {
    return `invalid message count: ${messages.length} messages, expected an even number (user, assistant, ...)`;
  }
  if (ranking && messages.length % 2 === 0) {
    return `invalid message count: ${messages.length} messages, a preference prompt must end on a user turn`;
  }
  return undefined;
}

/** The prompt/response split after alignment (kto, pairwise or plain), shared by sharegpt and openai. */
function finish(
  r: RowReader,
  stage: Stage,
  aligned: Message[],
  system: string,
  tools: string,
  tags: Map<string, Role>,
): Converted {
  const need = needs(stage);
  const kto = r.ktoTag(need.kto);
  const base = { system, tools, source: source(r) };
  if (kto !== undefined) {
    return { example: { prompt: aligned.slice(0, -1), response: aligned.slice(-1), ...base, ktoTag: kto } };
  }
  if (r.attr.ranking) {
    const chosen = pairMessage(r, "chosen", need.pair), rejected = pairMessage(r, "rejected", need.pair);
    if (chosen && rejected) {
      const cr = tags.get(chosen.role as string), rr = tags.get(rejected.role as string);
      const ok = (x: Role | undefined) => x === "assistant" || x === "function";
      if (!ok(cr) || !ok(rr)) {
        return {
          dropped: `invalid role tag in chosen/rejected (${chosen.role}, ${rejected.role}), expected assistant`,
        };
      }
      return {
        example: {
          prompt: aligned,
          response: [{ role: cr!, content: chosen.content as string }, {
            role: rr!,
            content: rejected.content as string,
          }],
          ...base,
        },
      };
    }
  }
  return { example: { prompt: aligned.slice(0, -1), response: aligned.slice(-1), ...base } };
}

export function sharegpt(r: RowReader, stage: Stage): Converted {
  const col = r.attr.columns.messages!;
  let messages = rawMessages(r, "messages");
  const tags = tagRoles(r);
  messages.forEach((m, i) => checkContent(r, m, `${col}[${i}]`));
  let system: string;
  const systemTag = r.attr.tags.system_tag;
  if (systemTag !== undefined && messages.length > 0 && messages[0].role === systemTag) {
    system = messages[0].content as string;
    messages = messages.slice(1);
  } else {
    system = r.string("system") ?? "";
  }
  const aligned: Message[] = [];
  for (let i = 0; i < messages.length; i++) {
    const role = tags.get(messages[i].role as string);
    const accept = i % 2 === 0 ? ["user", "observation"] : ["assistant", "function"];
    if (role === undefined || !accept.includes(role)) {
      return {
        dropped: `invalid role tag: message ${i + 1} (after the system message) has ${
          JSON.stringify(messages[i].role)
        }, expected ${accept.join(" or ")}`,
      };
    }
    aligned.push({ role, content: messages[i].content as string });
  }
  const bad = checkOrder(aligned, r.attr.ranking);
  if (bad) return { dropped: bad };
  return finish(r, stage, aligned, system, r.tools(), tags);
}

export function openai(r: RowReader, stage: Stage): Converted {
  const col = r.attr.columns.messages!;
  let messages = rawMessages(r, "messages");
  const tags = tagRoles(r);
  const t = r.attr.tags;
  let system: string;
  let first = 0; // index of messages[0] in the row's list
  if (t.system_tag !== undefined && messages.length > 0 && messages[0].role === t.system_tag) {
    system = checkContent(r, messages[0], `${col}[0]`);
    messages = messages.slice(1);
    first = 1;
  } else {
    system = r.string("system") ?? "";
  }
  const aligned: Message[] = [];
  let toolResponses: string[] = [];
  let broken: string | undefined;
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    let role = m.role as string;
    let content: string;
    const toolCalls = m.obj.tool_calls;
    if ((role === t.assistant_tag || role === t.function_tag) && Array.isArray(toolCalls) && toolCalls.length > 0) {
      const fns = toolCalls.map((tc, k) => {
        if (typeof tc !== "object" || tc === null || !("function" in tc)) {
          throw r.error(
            `${col}[${first + i}].tool_calls[${k}] should be {"function": {...}}`,
            `${col}[${first + i}].tool_calls`,
          );
        }
        return (tc as Row).function;
      });
      content = pyJsonDumps(fns);
      role = t.function_tag as string;
    } else {
      content = checkContent(r, m, `${col}[${first + i}]`);
    }
    if (t.observation_tag !== undefined && role === t.observation_tag) {
      toolResponses.push(content);
      continue;
    }
    if (toolResponses.length > 0) {
      aligned.push({ role: "observation", content: toolResponses.join("\n</tool_response>\n<tool_response>\n") });
      toolResponses = [];
    }
    const mapped = tags.get(role);
    if (mapped === undefined) {
      broken ??= `invalid role tag: ${JSON.stringify(role)} is none of the dataset's tags`;
      continue;
    }
    aligned.push({ role: mapped, content });
  }
  broken ??= checkOrder(aligned, r.attr.ranking);
  const tools = r.tools();
  // LF's OpenAIDatasetConverter system quirk.
  const short = "detailed thinking off";
  if (!system) {
    if (!tools) system = short;
  } else if (!tools) {
    if (!system.includes("detailed thinking on") && !system.includes(short)) system += "\n" + short;
  } else {
    system += "\n";
  }
  if (broken) return { dropped: broken };
  return finish(r, stage, aligned, system, tools, tags);
}
