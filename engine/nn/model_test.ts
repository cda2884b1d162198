/**
 * Every decoder family against transformers goldens (fixtures/models, made by fixtures/make_models.py):
 * logits within 1e-4 absolute, the loss within 1e-5 relative, gradients within 1e-4 relative norm —
 * on the reference executor, on WebGPU and on ONNX Runtime.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { openSafetensors } from "../io/safetensors.ts";

import { DENSE, FORWARD_ONLY } from "./families_testing.ts";
import { executors } from "./executors_testing.ts";
const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const FAMILIES = [
  "llama",
  "llama_bf16",
  "mistral",
  "qwen2",
  "qwen3",
  "gemma",
  "gemma2",
  "phi3",
  ...DENSE,
  ...FORWARD_ONLY,
];

async function golden(family: string) {
  const f = await openSafetensors(`${root}${family}/golden.safetensors`);
  const rows = async (name: string) => {
    const t = f.tensors.get(name)!;
    const d = await f.readF32(name);
    const [B, L] = t.shape;
    return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * L, (b + 1) * L)));
  };
  const g = {
    ids: await rows("input_ids"),
    mask: await rows("attention_mask"),
    labels: await rows("labels"),
    logits: await f.readF32("logits"),
    logitsNoMask: await f.readF32("logits_nomask"),
    loss: (await f.readF32("loss"))[0],
    grads: new Map<string, Float32Array>(),
  };
  for (const name of f.tensors.keys()) if (name.startsWith("grad.")) g.grads.set(name.slice(5), await f.readF32(name));
  f.close();
  return g;
}

for (const family of FAMILIES) {
  for (const [exName, make] of executors()) {
    Deno.test(`${family} on ${exName}: logits and loss match transformers`, async () => {
      const g = await golden(family);
      const model = await loadModel(`${root}${family}`, { executor: await make() });
      const V = model.config.vocab;
      const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
      const L = g.ids[0].length;
      let worst = 0;
      // Compared where attention_mask is 1: transformers' padded queries attend to earlier real tokens,
      // Whetstone's keep to the padding segment; no loss is ever taken there.
      g.ids.forEach((_, b) => {
        for (let i = 0; i < L; i++) {
          if (!g.mask[b][i]) continue;
          for (let v = 0; v < V; v++) {
            const k = (b * L + i) * V + v;
            worst = Math.max(worst, Math.abs(res.logits[k] - g.logits[k]));
          }
        }
      });
      assert.ok(worst <= 1e-4, `max logit error ${worst}`);
      assert.ok(Math.abs(res.loss! - g.loss) <= 1e-5 * Math.abs(g.loss), `loss ${res.loss} vs ${g.loss}`);
      const plain = await model.forward([g.ids[0]]);
      let w2 = 0;
      for (let k = 0; k < L * V; k++) w2 = Math.max(w2, Math.abs(plain.logits[k] - g.logitsNoMask[k]));
      assert.ok(w2 <= 1e-4, `max logit error without a mask ${w2}`);
      const fused = await model.loss(g.ids, { labels: g.labels, attentionMask: g.mask });
      assert.ok(Math.abs(fused - g.loss) <= 1e-5 * Math.abs(g.loss), `fused-head loss ${fused} vs ${g.loss}`);
    });

    Deno.test(`${family} on ${exName}: gradients match transformers`, async () => {
      const g = await golden(family);
      const model = await loadModel(`${root}${family}`, { executor: await make(), dtype: "f32" });
      const { loss, grads } = await model.gradients(g.ids, { labels: g.labels, attentionMask: g.mask });
      assert.ok(Math.abs(loss - g.loss) <= 1e-5 * Math.abs(g.loss), `loss ${loss} vs ${g.loss}`);
      assert.deepEqual([...grads.keys()].sort(), [...g.grads.keys()].sort());
      for (const [name, want] of g.grads) {
        const got = grads.get(name)!;
        let num = 0, den = 0;
        for (let i = 0; i < want.length; i++) {
          num += (got[i] - want[i]) ** 2;
          den += want[i] ** 2;
        }
        const rel = Math.sqrt(num / Math.max(den, 1e-30));
        assert.ok(rel <= 1e-4, `${name}: relative error ${rel.toExponential(2)}`);
      }
    });
  }
}

Deno.test("stopIds: generation_config.json's eos_token_id (one or a list) joins the template's stop ids", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference" });
  assert.equal(model.generationConfig?.eos_token_id, 2);
  assert.deepEqual(model.stopIds([7, 2]), [2, 7]);
  model.generationConfig = { eos_token_id: [5, 9, 100000] }; // ids outside the vocabulary are dropped
  assert.deepEqual(model.stopIds([3]), [3, 5, 9]);
  model.generationConfig = undefined;
  assert.deepEqual(model.stopIds(), []);
});
