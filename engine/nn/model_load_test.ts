/**
 * How `loadModel` hands weights to the executor: each tensor's raw bytes through `setParamBytes` when the executor
 * has it and the weight keeps its stored dtype (the bytes of the file, not a decoded copy), decoded f32 through
 * `setParam` otherwise.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { openModelFolder } from "../io/hf_folder.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import type { DType } from "../graph/mod.ts";

const dir = new URL("../../fixtures/models/llama_bf16", import.meta.url).pathname;

/** A reference executor that records how each param arrived. */
class Recording extends ReferenceExecutor {
  readonly bytes = new Map<string, { bytes: Uint8Array; dtype: DType }>();
  readonly values = new Map<string, DType>();
  override setParam(name: string, data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): void {
    this.values.set(name, dtype);
    super.setParam(name, data, shape, dtype);
  }
  setParamBytes(name: string, bytes: Uint8Array, shape: readonly number[], dtype: DType): void {
    this.bytes.set(name, { bytes, dtype });
    const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    super.setParam(
      name,
      Float32Array.from(h, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]),
      shape,
      dtype,
    );
  }
}

Deno.test("loadModel: bf16 weights reach setParamBytes as the file's bytes, in their stored dtype", async () => {
  const ex = new Recording();
  const model = await loadModel(dir, { executor: ex });
  using folder = await openModelFolder(dir);
  assert.equal(ex.values.size, 0, `decoded through setParam: ${[...ex.values.keys()].join(", ")}`);
  assert.deepEqual([...ex.bytes.keys()].sort(), [...model.params.keys()].sort());
  for (const [name, { bytes, dtype }] of ex.bytes) {
    assert.equal(dtype, "bf16", name);
    assert.equal(model.params.get(name)!.dtype, "bf16", name);
    assert.deepEqual(bytes, await folder.read(name), name);
  }
  // The weights arrived intact: the model computes (its goldens are in model_test.ts).
  const { loss } = await model.forward([[1, 2, 3, 4]], { labels: [[1, 2, 3, 4]] });
  assert.ok(Number.isFinite(loss), `loss ${loss}`);
});

Deno.test("loadModel: dtype f32 upcasts through setParam (no raw bytes kept)", async () => {
  const ex = new Recording();
  const model = await loadModel(dir, { executor: ex, dtype: "f32" });
  assert.equal(ex.bytes.size, 0);
  assert.deepEqual([...ex.values.values()].every((d) => d === "f32"), true);
  const name = "model.layers.0.mlp.up_proj.weight";
  using folder = await openModelFolder(dir);
  assert.deepEqual(await ex.getParam(name), Float64Array.from(await folder.readF32(name)));
  assert.equal(model.params.get(name)!.dtype, "f32");
});
