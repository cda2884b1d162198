/**
 * The bitsandbytes formats against fixtures/quant/goldens.json (made by fixtures/quant/make_goldens.py, a port of
 * bitsandbytes' algorithm with torch): code books bit for bit, packed bytes, absmax, double-quantized state and the
 * dequantized values (sha-256 of their f32 bytes) for f32, bf16 and f16 sources.
 */
import assert from "node:assert/strict";
import { mulberry32 } from "../util/rng.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";
import { dynamicMap, FP4, nearestCode, NF4, quantizeFp4, quantizeNf4 } from "./codes.ts";
import { nibble, wordsToBytes } from "./blockwise.ts";
import { dequantizeWeight, quantBytes, quantizeWeight, weightAbsmax, weightBytes } from "./weight.ts";

interface GoldenCase {
  name: string;
  seed: number;
  rows: number;
  cols: number;
  dtype: "f32" | "bf16" | "f16";
  kind: "nf4" | "fp4" | "int8";
  blocksize: number;
  packed?: string;
  codes?: string;
  absmax: string;
  doubleQuant?: { qabsmax: string; absmax2: string; offset: number; absmax: string };
  dequant: { sha256: string; head: number[] };
  maxAbsError: number;
}

const golden = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/quant/goldens.json", import.meta.url)),
) as { nf4: number[]; fp4: number[]; dynamic: string; cases: GoldenCase[] };

const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const f32s = (s: string) => new Float32Array(b64(s).buffer);
const hex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));
const bits = (a: Float32Array) => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));

/** make_goldens.py's make_input: bell-shaped values, each row scaled by a power of two. */
function makeInput(seed: number, rows: number, cols: number, dtype: string): Float32Array {
  const r = mulberry32(seed);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const scale = 2 ** (Math.floor(r() * 6) - 3);
    for (let j = 0; j < cols; j++) out[i * cols + j] = Math.fround(Math.fround(r() + r() + r() - 1.5) * scale);
  }
  if (dtype === "bf16") return out.map((v) => fromBf16Bits(toBf16Bits(v)));
  if (dtype === "f16") return out.map((v) => fromF16Bits(toF16Bits(v)));
  return out;
}

async function sha256(a: Float32Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", a.slice().buffer));
  return Array.from(d, (x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("quant: NF4, FP4 and the dynamic 8-bit code are bitsandbytes' tables, bit for bit", () => {
  assert.deepEqual(bits(NF4), bits(Float32Array.from(golden.nf4)));
  assert.deepEqual(bits(FP4), bits(Float32Array.from(golden.fp4)));
  const dyn = dynamicMap();
  assert.equal(dyn.length, 256);
  assert.deepEqual(bits(dyn), bits(f32s(golden.dynamic)));
});

Deno.test("quant: code choice is the nearest code (ties to the lower), FP4's sign from x < 0", () => {
  for (let i = 0; i < 16; i++) assert.equal(quantizeNf4(NF4[i]), i);
  for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]) assert.equal(quantizeFp4(FP4[i]), i);
  assert.equal(quantizeFp4(-0.001), 8); // -0
  assert.equal(quantizeNf4(0.03979014977812767), 7); // on the pivot: the lower code
  const dyn = dynamicMap();
  for (let i = 0; i < 256; i++) assert.equal(nearestCode(dyn, dyn[i]), i);
  assert.equal(nearestCode(dyn, -1), 0);
});

for (const c of golden.cases) {
  Deno.test(`quant golden: ${c.name}`, async () => {
    const x = makeInput(c.seed, c.rows, c.cols, c.dtype);
    const qw = quantizeWeight(x, [c.rows, c.cols], {
      kind: c.kind,
      blocksize: c.blocksize,
      doubleQuant: !!c.doubleQuant,
    });
    const n = c.rows * c.cols;
    const bytes = weightBytes(qw);
    if (c.kind === "int8") {
      assert.deepEqual(Array.from(new Int8Array(bytes.buffer)), Array.from(new Int8Array(b64(c.codes!).buffer)));
    } else {
      const want = hex(c.packed!);
      const bad = Array.from(want).findIndex((v, i) => v !== bytes[i]);
      assert.equal(bad, -1, `byte ${bad}: ${bytes[bad]} vs ${want[bad]} (element ${2 * bad}: ${x[2 * bad]})`);
      assert.equal(bytes.length, want.length);
      assert.equal(nibble(bytes, 0), want[0] >> 4);
    }
    if (c.doubleQuant) {
      const dq = c.doubleQuant;
      const nb = Math.ceil(n / c.blocksize);
      assert.equal(qw.nested!.offset, dq.offset, "offset = mean(absmax) in f32");
      assert.deepEqual(bits(qw.nested!.absmax2), bits(f32s(dq.absmax2)));
      assert.deepEqual(Array.from(wordsToBytes(qw.nested!.codes, nb)), Array.from(hex(dq.qabsmax)));
      assert.deepEqual(bits(weightAbsmax(qw)), bits(f32s(dq.absmax)));
    } else assert.deepEqual(bits(qw.absmax!), bits(f32s(c.absmax)));
    const deq = dequantizeWeight(qw);
    assert.deepEqual(Array.from(deq.slice(0, 8)), c.dequant.head);
    assert.equal(await sha256(deq), c.dequant.sha256, "dequantized values differ from the golden's");
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(deq[i] - x[i]));
    assert.equal(err, c.maxAbsError);
    assert.ok(quantBytes(qw.spec, qw.shape) < n * (c.kind === "int8" ? 1.2 : 0.7));
  });
}
