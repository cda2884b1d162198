/**
 * The serve flags of continuous batching (`--max-batch`, `--max-queue`) and the inference backend: Whetstone's own
 * engine only, so `infer_backend: vllm|sglang|ktransformers` (and their settings) are refused by `deno task serve`
 * and `POST /chat/models` with a 400 naming the key.
 */
import assert from "node:assert/strict";
import { serveOptions } from "./options.ts";
import { startServer } from "./testing.ts";

const none = () => undefined;

Deno.test("serve flags: --max-batch / --max-queue (and their env), --infer-backend refused unless huggingface", () => {
  assert.equal(serveOptions([], none).options.batch, undefined);
  assert.deepEqual(serveOptions(["--max-batch", "4", "--max-queue=0"], none).options.batch, {
    maxBatch: 4,
    maxQueue: 0,
  });
  const env: Record<string, string> = { WHETSTONE_MAX_BATCH: "16", WHETSTONE_INFER_BACKEND: "huggingface" };
  assert.deepEqual(serveOptions([], (n) => env[n]).options.batch, { maxBatch: 16, maxQueue: undefined });
  assert.throws(
    () => serveOptions(["--max-batch", "0"], none),
    /--max-batch \/ WHETSTONE_MAX_BATCH: expected an integer >= 1/,
  );
  assert.throws(
    () => serveOptions(["--max-queue", "x"], none),
    /--max-queue \/ WHETSTONE_MAX_QUEUE: expected an integer >= 0/,
  );
  assert.throws(
    () => serveOptions(["--infer-backend", "vllm"], none),
    /--infer-backend \/ WHETSTONE_INFER_BACKEND \(infer_backend\): Whetstone has no vllm backend/,
  );
  assert.throws(
    () => serveOptions([], (n) => n === "WHETSTONE_INFER_BACKEND" ? "sglang" : undefined),
    /no sglang backend/,
  );
});

Deno.test("POST /chat/models: infer_backend other than huggingface, and vLLM keys, are 400s naming the key", async () => {
  const t = await startServer();
  try {
    const model = "fixtures/tiny/model";
    const r = await t.call("POST", "/chat/models", { model_name_or_path: model, infer_backend: "vllm" });
    assert.equal(r.status, 400);
    assert.equal(r.json.field, "infer_backend");
    assert.match(r.json.error, /infer_backend: Whetstone has no vllm backend/);
    const k = await t.call("POST", "/chat/models", { model_name_or_path: model, infer_backend: "ktransformers" });
    assert.deepEqual([k.status, k.json.field], [400, "infer_backend"]);
    const v = await t.call("POST", "/chat/models", { model_name_or_path: model, vllm_maxlen: 4096 });
    assert.equal(v.status, 400);
    assert.match(v.text, /vllm_maxlen/);
    const ok = await t.call("POST", "/chat/models", { model_name_or_path: model, infer_backend: "huggingface" });
    assert.equal(ok.status, 201, ok.text);
  } finally {
    await t.close();
  }
});
