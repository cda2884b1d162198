/**
 * What the mixture-of-experts golden tests share (moe_test.ts, moe_noaux_test.ts, moe_gpt_oss_test.ts): a fixture's
 * `golden.safetensors` read back, every gradient checked to 1e-4 relative norm, a scalar to 1e-5 relative.
 * @module
 */
import assert from "node:assert/strict";
import { openSafetensors } from "../io/safetensors.ts";
import { relNorm } from "./lora_testing.ts";

/** The golden batch, logits, loss and gradients (and the router-loss ones, when the fixture has them) of `dir`. */
export async function moeGolden(dir: string) {
  const f = await openSafetensors(`${dir}/golden.safetensors`);
  const rows = async (name: string) => {
    const [B, L] = f.tensors.get(name)!.shape, d = await f.readF32(name);
    return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * L, (b + 1) * L)));
  };
  const grads = async (prefix: string) => {
    const m = new Map<string, Float32Array>();
    for (const n of f.tensors.keys()) if (n.startsWith(prefix)) m.set(n.slice(prefix.length), await f.readF32(n));
    return m;
  };
  const has = (n: string) => f.tensors.has(n);
  const g = {
    ids: await rows("input_ids"),
    mask: await rows("attention_mask"),
    labels: await rows("labels"),
    logits: await f.readF32("logits"),
    logitsNoMask: has("logits_nomask") ? await f.readF32("logits_nomask") : undefined,
    loss: (await f.readF32("loss"))[0],
    grads: await grads("grad."),
    auxLoss: has("aux.loss") ? (await f.readF32("aux.loss"))[0] : undefined,
    auxGrads: await grads("aux.grad."),
  };
  f.close();
  return g;
}

/** Asserts the same gradient names as `want`, each within 1e-4 relative norm. */
export function checkGrads(got: Map<string, ArrayLike<number>>, want: Map<string, Float32Array>): void {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [name, w] of want) {
    const rel = relNorm(got.get(name)! as Float32Array, w);
    assert.ok(rel <= 1e-4, `${name}: relative error ${rel.toExponential(2)}`);
  }
}

/** Asserts `got` within 1e-5 relative of `want`. */
export const near = (got: number, want: number, what: string): void =>
  assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `${what} ${got} vs ${want}`);
