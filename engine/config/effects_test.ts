/**
 * Holds every key of the table to one effect: "implemented" (acts as in LLaMA-Factory), "inert" (accepted, changes
 * nothing, listed in docs/inert_keys.md) or "error" (any value but LF's default is an error naming the key).
 */
import assert from "node:assert/strict";
import { ConfigError, parseTrainArgs } from "./args.ts";
import { INERT_DOC } from "./inert_doc.ts";
import { effectOf, type KeySpec } from "./key_spec.ts";
import { KEY_TABLE } from "./keys.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const M = { model_name_or_path: "m" };
const rows = Object.entries(KEY_TABLE);
const keysOf = (effect: string) => rows.filter(([, s]) => effectOf(s) === effect).map(([k]) => k);

/** A value other than LF's default (and not null), for a key's row. */
function otherThan(s: KeySpec): unknown {
  const d = s.def;
  if (typeof d === "boolean") return !d;
  if (typeof d === "number") return d + 1;
  if (typeof d === "string") return `${d}_other`;
  return "other";
}

function problemsOf(raw: Record<string, unknown>): string {
  try {
    parseTrainArgs({ ...M, ...raw }, [], "t.yaml");
    return "";
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${e}`);
    return e.message;
  }
}

Deno.test("inert keys are exactly the ones docs/inert_keys.md lists", async () => {
  const text = await Deno.readTextFile(`${ROOT}${INERT_DOC}`);
  const listed = [...text.matchAll(/^\| `(\w+)` +\|/gm)].map((m) => m[1]).sort();
  assert.deepEqual(listed, keysOf("inert").sort(), `regenerate: deno run -A engine/config/inert_doc.ts`);
  for (const k of ["run_name", "dataloader_num_workers", "loraplus_lr_embedding", "bf16"]) {
    assert.ok(listed.includes(k), `${k} is inert`);
  }
});

Deno.test("inert keys accept a non-default value", () => {
  for (const [key, s] of rows.filter(([, s]) => effectOf(s) === "inert" && s.use === "train")) {
    assert.equal(problemsOf({ [key]: otherThan(s) }), "", key);
  }
});

Deno.test("error keys: a non-default value is an error naming the key; LF's default is accepted", () => {
  const errors = rows.filter(([, s]) => effectOf(s) === "error");
  assert.ok(errors.length > 40);
  for (const k of ["streaming", "fsdp", "num_beams", "eval_num_beams"]) {
    assert.ok(errors.some(([key]) => key === k), `${k} is an error key`);
  }
  for (const [key, s] of errors) {
    const msg = problemsOf({ [key]: otherThan(s) });
    assert.match(msg, new RegExp(`t\\.yaml: ${key} is not supported by Whetstone yet`), key);
    assert.equal(problemsOf({ [key]: s.def }), "", `${key}: ${JSON.stringify(s.def)} (LF's default) is accepted`);
  }
  // Enum values LF has and Whetstone lacks are errors naming the key too.
  for (const [key, s] of rows.filter(([, s]) => s.use === "train" && s.lacking?.length)) {
    for (const v of s.lacking!) assert.match(problemsOf({ [key]: v }), new RegExp(`${key}: ${v} is not supported`));
  }
});

/** Keys that act without the engine naming them, and why. */
const ACT_UNNAMED: Record<string, string> = {};

async function sources(dir: string, out: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) await sources(path, out);
    else if (e.name.endsWith(".ts") && !e.name.endsWith("_test.ts") && !/^engine\/config\/keys?[_.]/.test(path)) {
      out.push(await Deno.readTextFile(`${ROOT}${path}`));
    }
  }
  return out;
}

Deno.test("implemented keys are read by the code, outside the key table", async () => {
  const code = (await Promise.all(["engine", "routes"].map((d) => sources(d)))).flat()
    // Comments do not count as reading a key.
    .map((t) => t.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "")).join("\n");
  const unread = keysOf("implemented").filter((k) => !(k in ACT_UNNAMED) && !new RegExp(`\\b${k}\\b`).test(code));
  assert.deepEqual(unread, [], "implemented keys nothing reads: implement them, or mark them inert or unsupported");
});
