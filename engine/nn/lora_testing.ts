/**
 * Helpers of the adapter tests: PEFT goldens (fixtures/models/<family>[/<adapter>]/golden.safetensors) and the
 * comparisons the model tests use.
 * @module
 */
import { openSafetensors } from "../io/safetensors.ts";

/** A golden file: the inputs as rows, logits, loss, `grad.*` tensors and every other tensor by name. */
export async function golden(dir: string) {
  const f = await openSafetensors(`${dir}/golden.safetensors`);
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
    loss: f.tensors.has("loss") ? (await f.readF32("loss"))[0] : NaN,
    grads: new Map<string, Float32Array>(),
    tensors: new Map<string, Float32Array>(),
  };
  for (const name of f.tensors.keys()) {
    if (name.startsWith("grad.")) g.grads.set(name.slice(5), await f.readF32(name));
    else g.tensors.set(name, await f.readF32(name));
  }
  f.close();
  return g;
}

/** Max |got − want| over positions where the mask is 1 (logits [B, L, V]). */
export function maskedLogitError(got: ArrayLike<number>, want: ArrayLike<number>, mask: number[][], V: number) {
  let worst = 0;
  const L = mask[0].length;
  mask.forEach((row, b) => {
    for (let i = 0; i < L; i++) {
      if (!row[i]) continue;
      for (let v = 0; v < V; v++) {
        const k = (b * L + i) * V + v;
        worst = Math.max(worst, Math.abs(got[k] - want[k]));
      }
    }
  });
  return worst;
}

/** ‖got − want‖ / ‖want‖. */
export function relNorm(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0, den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
