import assert from "node:assert/strict";
import {
  decodeF32,
  openSafetensors,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  writeSafetensors,
} from "./safetensors.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";

const SAMPLE = new URL("../../fixtures/io/sample.safetensors", import.meta.url).pathname;
const SAMPLE_JSON = new URL("../../fixtures/io/sample.json", import.meta.url).pathname;

interface Expected {
  metadata: Record<string, string>;
  tensors: Record<string, { dtype: SafetensorsDType; shape: number[]; values: (number | string)[] }>;
}

const num = (v: number | string) => (v === "inf" ? Infinity : v === "-inf" ? -Infinity : Number(v));

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_st_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeRaw(path: string, header: unknown, data = new Uint8Array(0), lenOverride?: number) {
  const json = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lenOverride ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  await Deno.writeFile(path, out);
}

async function rejects(path: string, pattern: RegExp) {
  await assert.rejects(openSafetensors(path), (e: Error) => {
    assert.match(e.message, pattern);
    assert.ok(e.message.includes(path), `error should name the file: ${e.message}`);
    return true;
  });
}

Deno.test("safetensors: reads the file written by the Python library", async () => {
  const expected: Expected = JSON.parse(await Deno.readTextFile(SAMPLE_JSON));
  using f = await openSafetensors(SAMPLE);
  assert.deepEqual(f.metadata, expected.metadata);
  assert.deepEqual([...f.tensors.keys()].sort(), Object.keys(expected.tensors).sort());
  for (const [name, e] of Object.entries(expected.tensors)) {
    const t = f.tensors.get(name)!;
    assert.equal(t.dtype, e.dtype, name);
    assert.deepEqual(t.shape, e.shape, name);
    const got = await f.readF32(name);
    assert.equal(got.length, e.values.length, name);
    for (let i = 0; i < got.length; i++) {
      // f64 values are compared after rounding to f32; I64 beyond 2^24 too
      assert.equal(got[i], Math.fround(num(e.values[i])), `${name}[${i}]`);
    }
    if (e.dtype === "I64") {
      const raw = await f.read(name);
      assert.deepEqual([...new BigInt64Array(raw.buffer)], e.values.map((v) => BigInt(v)));
    }
    if (e.dtype === "F64") {
      const raw = await f.read(name);
      assert.deepEqual([...new Float64Array(raw.buffer)], e.values.map(num));
    }
  }
  // -0 survives f16 decoding
  const special = await f.readF32("special_f16");
  assert.ok(Object.is(special[3], -0));
});

Deno.test("safetensors: our writer reproduces the Python library's bytes", async () => {
  using src = await openSafetensors(SAMPLE);
  const tensors: Parameters<typeof writeSafetensors>[1] = {};
  for (const [name, t] of src.tensors) tensors[name] = { dtype: t.dtype, shape: t.shape, data: await src.read(name) };
  await withTempDir(async (dir) => {
    const out = `${dir}/copy.safetensors`;
    await writeSafetensors(out, tensors, { ...src.metadata }); // metadata in the file's own order
    assert.deepEqual(await Deno.readFile(out), await Deno.readFile(SAMPLE));
  });
});

Deno.test("safetensors: write then read back every dtype, with metadata and aligned padding", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/t.safetensors`;
    const vals = [0.1, -2.5, 3.14159, 65504, -1e-6, 1e30];
    await writeSafetensors(path, {
      f32: { dtype: "F32", shape: [2, 3], data: new Float32Array(vals) },
      f16: { dtype: "F16", shape: [6], data: vals },
      bf16: { dtype: "BF16", shape: [3, 2], data: new Float32Array(vals) },
      bf16bits: { dtype: "BF16", shape: [2], data: new Uint16Array([toBf16Bits(1.5), toBf16Bits(-3)]) },
      f64: { dtype: "F64", shape: [6], data: vals },
      i32: { dtype: "I32", shape: [3], data: new Int32Array([-7, 0, 2147483647]) },
      i64: { dtype: "I64", shape: [3], data: [-1, 2 ** 40, 5] },
      i64big: { dtype: "I64", shape: [1], data: new BigInt64Array([-(2n ** 62n)]) },
      i16: { dtype: "I16", shape: [2], data: [-300, 300] },
      i8: { dtype: "I8", shape: [2], data: [-100, 100] },
      u8: { dtype: "U8", shape: [3], data: new Uint8Array([0, 128, 255]) },
      bool: { dtype: "BOOL", shape: [3], data: [1, 0, 1] },
      scalar: { dtype: "F32", shape: [], data: [42] },
      empty: { dtype: "F16", shape: [0, 4], data: [] },
    }, { note: "hello", format: "pt" });

    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    assert.ok(bytes[8 + n - 1] === 0x20 || bytes[8 + n - 1] === 0x7d);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["t.safetensors"]); // no temp file left

    using f = await openSafetensors(path);
    assert.deepEqual(f.metadata, { note: "hello", format: "pt" });
    for (const [name, t] of f.tensors) assert.equal((t.offset - 8 - n) % SAFETENSORS_DTYPE_BYTES[t.dtype], 0, name);
    assert.deepEqual([...await f.readF32("f32")], vals.map(Math.fround));
    assert.deepEqual([...await f.readF32("f16")], vals.map((v) => fromF16Bits(toF16Bits(v))));
    assert.deepEqual([...await f.readF32("bf16")], vals.map((v) => fromBf16Bits(toBf16Bits(v))));
    assert.deepEqual([...await f.readF32("bf16bits")], [1.5, -3]);
    assert.deepEqual([...new Float64Array((await f.read("f64")).buffer)], vals);
    assert.deepEqual([...new Int32Array((await f.read("i32")).buffer)], [-7, 0, 2147483647]);
    assert.deepEqual([...new BigInt64Array((await f.read("i64")).buffer)], [-1n, 2n ** 40n, 5n]);
    assert.deepEqual([...new BigInt64Array((await f.read("i64big")).buffer)], [-(2n ** 62n)]);
    assert.deepEqual([...await f.readF32("i16")], [-300, 300]);
    assert.deepEqual([...await f.readF32("i8")], [-100, 100]);
    assert.deepEqual([...await f.readF32("u8")], [0, 128, 255]);
    assert.deepEqual([...await f.readF32("bool")], [1, 0, 1]);
    assert.deepEqual([...await f.readF32("scalar")], [42]);
    assert.deepEqual(f.tensors.get("scalar")!.shape, []);
    assert.equal((await f.read("empty")).length, 0);
    // concurrent reads on the one handle do not interleave
    const all = await Promise.all([...f.tensors.keys()].map((k) => f.read(k)));
    assert.deepEqual(all.map((b) => b.length), [...f.tensors.values()].map((t) => t.byteLength));
    await assert.rejects(f.read("nope"), /no tensor named "nope"/);
  });
});

Deno.test("safetensors: writer rejects mismatched data", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/bad.safetensors`;
    await assert.rejects(writeSafetensors(path, { a: { dtype: "F32", shape: [2, 2], data: [1, 2, 3] } }), /3 values/);
    await assert.rejects(
      writeSafetensors(path, { a: { dtype: "F16", shape: [2], data: new Uint8Array(3) } }),
      /3 raw bytes given, F16\[2\] needs 4/,
    );
    await assert.rejects(
      writeSafetensors(path, { a: { dtype: "Q4" as SafetensorsDType, shape: [2], data: [1, 2] } }),
      /unknown dtype "Q4"/,
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("safetensors: clear errors for malformed files", async () => {
  await withTempDir(async (dir) => {
    const p = (name: string) => `${dir}/${name}.safetensors`;
    await Deno.writeFile(p("short"), new Uint8Array(5));
    await rejects(p("short"), /shorter than the 8-byte header/);

    await writeRaw(p("pastend"), { a: 1 }, new Uint8Array(0), 1000);
    await rejects(p("pastend"), /header length 1000 runs past the end of the file/);

    await writeRaw(p("notjson"), "{not json");
    await rejects(p("notjson"), /header is not valid JSON/);

    await writeRaw(p("array"), "[1,2]");
    await rejects(p("array"), /header must be a JSON object/);

    const entry = (dtype: string, shape: number[], off: number[]) => ({ dtype, shape, data_offsets: off });
    await writeRaw(p("dtype"), { a: entry("Q4", [2], [0, 8]) }, new Uint8Array(8));
    await rejects(p("dtype"), /tensor "a": unknown dtype "Q4"/);

    await writeRaw(p("range"), { a: entry("F32", [4], [0, 16]) }, new Uint8Array(8));
    await rejects(p("range"), /"a": data_offsets \[0, 16\] run past the data section of 8 bytes/);

    await writeRaw(p("size"), { a: entry("F32", [3], [0, 8]) }, new Uint8Array(8));
    await rejects(p("size"), /"a": data_offsets \[0, 8\] span 8 bytes but F32\[3\] needs 12/);

    await writeRaw(p("order"), { a: entry("F32", [0], [8, 4]) }, new Uint8Array(8));
    await rejects(p("order"), /begin <= end/);

    await writeRaw(p("overlap"), { a: entry("F32", [2], [0, 8]), b: entry("F16", [4], [4, 12]) }, new Uint8Array(12));
    await rejects(p("overlap"), /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap/);

    await writeRaw(p("meta"), { __metadata__: { a: 1 } });
    await rejects(p("meta"), /__metadata__.a must be a string/);
  });
});

Deno.test("safetensors: f8 decoding", () => {
  // E4M3: 0x38 = 1.0, 0x7e = 448 (max), 0x01 = 2^-9 (smallest subnormal), 0x7f = NaN
  const e4 = decodeF32("F8_E4M3", new Uint8Array([0x38, 0x7e, 0x01, 0xb8, 0x7f]));
  assert.deepEqual([...e4.slice(0, 4)], [1, 448, 2 ** -9, -1]);
  assert.ok(Number.isNaN(e4[4]));
  // E5M2: 0x3c = 1.0, 0x7b = 57344 (max), 0x7c = inf, 0x01 = 2^-16
  const e5 = decodeF32("F8_E5M2", new Uint8Array([0x3c, 0x7b, 0x7c, 0x01]));
  assert.deepEqual([...e5], [1, 57344, Infinity, 2 ** -16]);
});
