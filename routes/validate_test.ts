/**
 * Request validation: zod issues become 400s naming the field in the API's words; the OpenAPI document is generated
 * from the same route table (every training key of the parser's table is a property of TrainArgs).
 */
import assert from "node:assert/strict";
import { z } from "../deps.ts";
import { KEYS, type KeySpec } from "../engine/mod.ts";
import { API, routeOf } from "./api.ts";
import { HttpError } from "./http.ts";
import { OPENAPI } from "./openapi.ts";
import { fieldOf, parseWith } from "./validate.ts";

function refused(schema: z.ZodType, value: unknown): [string | undefined, string] {
  try {
    parseWith(schema, value);
  } catch (e) {
    assert.ok(e instanceof HttpError && e.status === 400, String(e));
    return [e.field, e.message];
  }
  throw new Error(`${JSON.stringify(value)} was accepted`);
}

Deno.test("validate: each kind of problem names the field, what was expected and what came", () => {
  const step = API.step.body;
  assert.deepEqual(refused(step, { steps: 1.5 }), ["steps", "steps: expected an integer, got 1.5"]);
  assert.deepEqual(refused(step, { steps: 0 }), ["steps", "steps: expected a number >= 1, got 0"]);
  assert.deepEqual(refused(step, { steps: "2" }), ["steps", 'steps: expected an integer, got "2"']);
  assert.deepEqual(refused(step, { stepz: 1 }), ["stepz", "stepz: unknown field; expected one of steps"]);
  assert.deepEqual(parseWith(step, { steps: null }), { steps: null }); // null reads as absent
  const exp = API.export.body;
  assert.deepEqual(refused(exp, {}), ["export_dir", "export_dir: required"]);
  assert.deepEqual(refused(exp, { export_dir: "x", export_size: 0 }), [
    "export_size",
    "export_size: expected a number > 0, got 0",
  ]);
  assert.deepEqual(refused(exp, { export_dir: "x", infer_dtype: "fp8" }), [
    "infer_dtype",
    'infer_dtype: expected one of auto, float32, bfloat16, float16, got "fp8"',
  ]);
  const chat = API.chatCompletions.body;
  const [field, message] = refused(chat, { model: "m", messages: [{ role: "user", content: "x" }, 3] });
  assert.deepEqual([field, message], ["messages[1]", "messages[1]: expected an object, got 3"]);
  assert.deepEqual(refused(chat, { model: "m", messages: [] }), [
    "messages",
    "messages: Invalid length: expected a non-empty list of messages",
  ]);
  assert.equal(fieldOf(["messages", 0, "tool_calls", 2, "function"]), "messages[0].tool_calls[2].function");
});

Deno.test("validate: routes are found by concrete path; the document describes TrainArgs from the key table", () => {
  assert.equal(routeOf("POST", "/sessions/ab12/step"), API.step);
  assert.equal(routeOf("GET", "/sessions/ab12"), API.getSession);
  assert.equal(routeOf("GET", "/datasets?dataset_dir=x"), API.datasets);
  assert.equal(routeOf("PUT", "/sessions"), undefined);
  const schemas = (OPENAPI.components as { schemas: Record<string, { properties: Record<string, unknown> }> }).schemas;
  const train = Object.entries(KEYS).filter(([, s]) => s.use === "train").map(([k]) => k);
  assert.ok(train.length > 50, `${train.length} keys`);
  for (const k of train) assert.ok(k in schemas.TrainArgs.properties, `${k} is not in TrainArgs`);
  assert.deepEqual(
    schemas.TrainArgs.properties.learning_rate,
    (() => {
      const s: KeySpec = KEYS.learning_rate;
      return {
        type: "number",
        ...(s.min !== undefined ? { minimum: s.min } : {}),
        ...(s.gt !== undefined ? { exclusiveMinimum: s.gt } : {}),
        default: s.def,
      };
    })(),
  );
});
