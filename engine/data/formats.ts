/**
 * Converters from dataset rows to {@linkcode AlignedExample}, following LLaMA-Factory's `data/converter.py`
 * (`AlpacaDatasetConverter`, `SharegptDatasetConverter`, `OpenAIDatasetConverter`):
 *
 * - **alpaca**: the user turn is `instruction` and `input` joined by "\n" (empty parts skipped); `history` pairs become
 *   earlier user/assistant turns; `system` and `tools` columns; `ranking` with string `chosen`/`rejected`; a boolean
 *   `kto_tag`. A non-string `output` leaves the response empty (LF's "unsupervised" row).
 * - **sharegpt**: a leading `system_tag` message becomes the system prompt; roles must alternate (user/observation at
 *   even positions, assistant/function at odd ones) and the count must be even (odd with `ranking`), else the row is
 *   "broken" and dropped with a reason (LF keeps it empty and drops it later). The last message is the response.
 * - **openai**: sharegpt with `tool_calls` turned into a function message, consecutive tool results merged, and LF's
 *   "detailed thinking off" system quirk.
 *
 * KTO: where LF writes the response as `[answer, ""]` (desirable) or `["", answer]`, the aligned example has
 * `response: [answer]` and `ktoTag: true | false`.
 *
 * Stricter than LF, on purpose: a row without the key of a column the stage needs (e.g. `instruction`, or `output` for
 * sft) and a value of the wrong type (a number where a string goes, a message without its content) are
 * {@linkcode DataError}s naming file, row and field, instead of rows silently dropped or a crash later.
 * @module
 */
import type { AlignedExample, Message, Role } from "./aligned.ts";
import type { DatasetAttr, DatasetColumns } from "./dataset_info.ts";
import { DataError, type FileRow, type Row } from "./files.ts";

/** Training stages, as LLaMA-Factory names them (`rm` and `dpo` read preference data). */
export type Stage = "pt" | "sft" | "rm" | "dpo" | "kto" | "ppo";

/** Every stage. */
export const STAGES: readonly Stage[] = ["pt", "sft", "rm", "dpo", "kto", "ppo"];

/** A converted row, or the reason it was dropped (LF's "Skipping this abnormal example"). */
export type Converted = { example: AlignedExample; dropped?: undefined } | { example?: undefined; dropped: string };

/** Python's `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators. */
export function pyJsonDumps(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJsonDumps(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** Reads the row's fields with errors that name file, row and field. */
class RowReader {
  constructor(readonly attr: DatasetAttr, readonly row: FileRow) {}

  error(message: string, field?: string): DataError {
    const { file, row, line } = this.row;
    return new DataError(message, { dataset: this.attr.name, file, row, line, field });
  }

  /** The value of column `key`, `undefined` when the dataset has no such column or the row lacks it. */
  value(key: keyof DatasetColumns, required = false): unknown {
    const col = this.attr.columns[key];
    if (col === undefined) return undefined;
    if (!Object.hasOwn(this.row.data, col)) {
      if (required) {
        const keys = Object.keys(this.row.data);
        throw this.error(
          `missing column ${JSON.stringify(col)} (columns.${key}); the row has ${
            keys.length ? `columns ${keys.map((k) => JSON.stringify(k)).join(", ")}` : "no columns"
          }`,
          col,
        );
      }
      return undefined;
    }
    return this.row.data[col];
  }

  /** A string column; null/absent is `undefined`; another type is an error. */
  string(key: keyof DatasetColumns, required = false): string | undefined {
    const v = this.value(key, required);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      const col = this.attr.columns[key]!;
      throw this.error(`column ${JSON.stringify(col)} (columns.${key}) should be a string, got ${typeName(v)}`, col);
    }
    return v;
  }

  /** The `tools` column as JSON text ("" when absent; arrays and objects are serialised as LF's openai converter). */
  tools(): string {
    const v = this.value("tools");
    if (v === undefined || v === null) return "";
    if (typeof v === "string") return v;
    if (typeof v === "object") return pyJsonDumps(v);
    const col = this.attr.columns.tools!;
    throw this.error(`column ${JSON.stringify(col)} (columns.tools) should be a JSON string of tools, got ${typeName(v)}`, col);
  }

  /** The `kto_tag` column: a boolean, or undefined (null/absent). CSV cells "true"/"false" count as booleans. */
  ktoTag(required: boolean): boolean | undefined {
    const v = this.value("kto_tag", required);
    if (v === undefined || v === null) return undefined;
    if (typeof v === "boolean") return v;
    if (typeof v === "string" && /\.csv$/i.test(this.row.file)) {
      const s = v.trim().toLowerCase();
      if (s === "true" || s === "false") return s === "true";
      if (s === "") return undefined;
    }
    const col = this.attr.columns.kto_tag!;
    throw this.error(`column ${JSON.stringify(col)} (columns.kto_tag) should be true or false, got ${JSON.stringify(v)}`, col);
  }
}

/** What a stage needs from each row (used to decide which missing keys are errors). */
function needs(stage: Stage) {
  return { response: stage === "sft" || stage === "kto", pair: stage === "rm" || stage === "dpo", kto: stage === "kto" };
}

/** Converts one row with the dataset's formatting. Throws {@linkcode DataError} for missing fields and wrong types. */
export function convertRow(attr: DatasetAttr, row: FileRow, stage: Stage): Converted {
  const r = new RowReader(attr, row);
  switch (attr.formatting) {
    case "alpaca":
      return alpaca(r, stage);
    case "sharegpt":
      return sharegpt(r, stage);
    case "openai":
      return openai(r, stage);
  }
}

function source(r: RowReader): AlignedExample["source"] {
  return { dataset: r.attr.name, file: r.row.file, row: r.row.row };
}

function alpaca(r: RowReader, stage: Stage): Converted {
  const need = needs(stage);
  const prompt: Message[] = [];
  const history = r.value("history");
  if (Array.isArray(history)) {
    history.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
        const col = r.attr.columns.history!;
        throw r.error(
          `${col}[${i}] should be a [prompt, response] pair of strings, got ${JSON.stringify(pair)?.slice(0, 80)}`,
          col,
        );
      }
      prompt.push({ role: "user", content: pair[0] }, { role: "assistant", content: pair[1] });
    });
  } else if (history !== undefined && history !== null) {
    const col = r.attr.columns.history!;
    throw r.error(`column ${JSON.stringify(col)} (columns.history) should be a list of pairs, got ${typeName(history)}`, col);
  }
  const query = [r.string("prompt", true), r.string("query")].filter((s) => s); // LF: only non-empty parts
  prompt.push({ role: "user", content: query.join("\n") });

  const output = r.string("response", need.response);
  const kto = r.ktoTag(need.kto);
  let response: Message[] = [];
  let ktoTag: boolean | undefined;
  if (kto !== undefined) {
    ktoTag = kto;
    if (output !== undefined) response = [{ role: "assistant", content: output }];
  } else {
    const chosen = r.attr.ranking ? r.string("chosen", need.pair) : undefined;
    const rejected = r.attr.ranking ? r.string("rejected", need.pair) : undefined;
    if (chosen !== undefined && rejected !== undefined) {
      response = [{ role: "assistant", content: chosen }, { role: "assistant", content: rejected }];
    } else if (output !== undefined) {
      response = [{ role: "assistant", content: output }];
    }
  }
  const example: AlignedExample = { prompt, response, system: r.string("system") ?? "", tools: r.tools(), source: source(r) };
  if (ktoTag !== undefined) example.ktoTag = ktoTag;
  return { example };
}

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
  if (!Array.isArray(v)) throw r.error(`column ${JSON.stringify(col)} should be a list of messages, got ${typeName(v)}`, col);
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
      `column ${JSON.stringify(col)} should be a message object {"${roleTag}": ..., "${contentTag}": ...}, got ${typeName(v)}`,
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
        return { dropped: `invalid role tag in chosen/rejected (${chosen.role}, ${rejected.role}), expected assistant` };
      }
      return {
        example: {
          prompt: aligned,
          response: [{ role: cr!, content: chosen.content as string }, { role: rr!, content: rejected.content as string }],
          ...base,
        },
      };
    }
  }
  return { example: { prompt: aligned.slice(0, -1), response: aligned.slice(-1), ...base } };
}

function sharegpt(r: RowReader, stage: Stage): Converted {
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

function openai(r: RowReader, stage: Stage): Converted {
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
          throw r.error(`${col}[${first + i}].tool_calls[${k}] should be {"function": {...}}`, `${col}[${first + i}].tool_calls`);
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

/**
 * Why an aligned example cannot train `stage` (LF's processors drop such rows as "Dropped invalid example"), or
 * undefined when it can: pt needs a prompt; sft an odd prompt and one response; rm/dpo an odd prompt and two
 * responses; kto an odd prompt, one response and a kto tag; ppo an odd prompt.
 */
export function stageProblem(ex: AlignedExample, stage: Stage): string | undefined {
  if (stage === "pt") return ex.prompt.length === 0 ? "empty prompt" : undefined;
  if (ex.prompt.length % 2 !== 1) return `the prompt has ${ex.prompt.length} messages, expected an odd number`;
  switch (stage) {
    case "sft":
      return ex.response.length === 1 ? undefined : "no response (the response column is missing, null or not a string)";
    case "rm":
    case "dpo":
      return ex.response.length === 2 ? undefined : "no chosen/rejected pair (null or missing)";
    case "kto":
      if (ex.ktoTag === undefined) return "no kto tag (null)";
      return ex.response.length === 1 ? undefined : "no response (null or missing)";
    case "ppo":
      return undefined;
  }
}

/** Why a dataset cannot be used for `stage` at all (checked before reading it), or undefined. */
export function datasetProblem(attr: DatasetAttr, stage: Stage): string | undefined {
  const c = attr.columns;
  const media = (["images", "videos", "audios"] as const).filter((k) => c[k] !== undefined);
  if (media.length) {
    return `it has ${media.map((k) => `${k} column ${JSON.stringify(c[k])}`).join(" and ")}: multimodal datasets ` +
      `are not supported (only text)`;
  }
  const pairStage = stage === "rm" || stage === "dpo";
  if (pairStage && !attr.ranking) {
    return `stage ${stage} needs a preference dataset ("ranking": true in dataset_info.json)`;
  }
  if (!pairStage && attr.ranking) {
    return `it is a preference dataset ("ranking": true), which only stages rm and dpo use, not ${stage}`;
  }
  if (pairStage && (c.chosen === undefined || c.rejected === undefined)) {
    return `a preference dataset needs columns.chosen and columns.rejected`;
  }
  if (stage === "kto" && c.kto_tag === undefined) return `stage kto needs a kto_tag column (columns.kto_tag)`;
  if (attr.formatting === "alpaca") {
    if (c.prompt === undefined && c.query === undefined) return `an alpaca dataset needs columns.prompt`;
    if ((stage === "sft" || stage === "kto") && c.response === undefined) {
      return `stage ${stage} needs responses, and this alpaca dataset has no response column (columns: ${
        JSON.stringify(c)
      })`;
    }
  } else if (c.messages === undefined) {
    return `formatting ${attr.formatting} needs columns.messages`;
  }
  return undefined;
}
