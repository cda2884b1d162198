import assert from "node:assert/strict";
import { hasGpu } from "../gpu/device.ts";
import { toBf16Bits, toF16Bits } from "../util/half.ts";
import type { Executor } from "./executor.ts";
import { bytesToF32, setParamFromBytes } from "./param_bytes.ts";
import { ReferenceExecutor } from "./reference.ts";
import { WebGpuExecutor } from "./webgpu.ts";
import { OnnxExecutor } from "./onnx/executor.ts";

const gpu = await hasGpu();
const VALUES = [0.5, -1.25, 3, 1e-3, -65504, 7.5, 0]; // odd count: 14 bytes of f16/bf16

function raw(dtype: "f32" | "f16" | "bf16"): Uint8Array {
  if (dtype === "f32") return new Uint8Array(Float32Array.from(VALUES).buffer);
  const f = dtype === "f16" ? toF16Bits : toBf16Bits;
  return new Uint8Array(Uint16Array.from(VALUES, f).buffer);
}

Deno.test("param_bytes: bytesToF32 widens f16/bf16 and views f32", () => {
  assert.deepEqual([...bytesToF32(raw("bf16"), "bf16")], [0.5, -1.25, 3, 0.00099945068359375, -65536, 7.5, 0]);
  assert.deepEqual([...bytesToF32(raw("f16"), "f16")], [0.5, -1.25, 3, 0.0010004043579101562, -65504, 7.5, 0]);
  const f = raw("f32");
  assert.equal(bytesToF32(f, "f32").buffer, f.buffer);
  const unaligned = new Uint8Array(f.byteLength + 1).subarray(1);
  unaligned.set(f);
  assert.deepEqual(bytesToF32(unaligned, "f32"), bytesToF32(f, "f32"));
});

async function roundTrip(ex: Executor) {
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    setParamFromBytes(ex, `p_${dtype}`, raw(dtype), [7], dtype);
    assert.deepEqual([...await ex.getParam(`p_${dtype}`)], [...bytesToF32(raw(dtype), dtype)], dtype);
    setParamFromBytes(ex, `up_${dtype}`, raw(dtype), [7], dtype, "f32"); // upcast as it loads
    assert.deepEqual([...await ex.getParam(`up_${dtype}`)], [...bytesToF32(raw(dtype), dtype)], `${dtype} as f32`);
  }
  // Overwriting a param of the same shape and dtype.
  setParamFromBytes(
    ex,
    "p_bf16",
    new Uint8Array(Uint16Array.from([1, 2, 3, 4, 5, 6, 7], toBf16Bits).buffer),
    [7],
    "bf16",
  );
  assert.deepEqual([...await ex.getParam("p_bf16")], [1, 2, 3, 4, 5, 6, 7]);
  assert.throws(
    () => setParamFromBytes(ex, "bad", new Uint8Array(12), [7], "bf16"),
    /param "bad": 12 bytes for bf16\[7\], expected 14/,
  );
}

Deno.test("param_bytes: an executor without setParamBytes gets decoded values (reference)", async () => {
  await roundTrip(new ReferenceExecutor());
});

Deno.test({
  name: "param_bytes: WebGPU stores the bytes as they are (odd sizes padded), and reads them back",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    try {
      await roundTrip(ex);
      assert.equal(ex.store.get("p_bf16")!.info.dtype, "bf16");
      assert.equal(ex.store.get("p_bf16")!.bytes, 16); // 14 bytes padded to a multiple of 4
      assert.equal(ex.store.get("up_bf16")!.info.dtype, "f32");
    } finally {
      ex.dispose();
    }
  },
});

Deno.test("param_bytes: ONNX Runtime widens the bytes straight into its f32 store, a copy of its own", async () => {
  const ex = await OnnxExecutor.create({ threads: 1 });
  try {
    await roundTrip(ex);
    const f = raw("f32");
    setParamFromBytes(ex, "own", f, [7], "f32");
    new Float32Array(f.buffer).fill(9); // the caller reuses its buffer
    assert.deepEqual([...await ex.getParam("own")], [...bytesToF32(raw("f32"), "f32")]);
    assert.throws(() => ex.setParamBytes!("i", new Uint8Array(28), [7], "i32"), /raw bytes of i32/);
  } finally {
    ex.dispose();
  }
});
