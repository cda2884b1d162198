/**
 * WGSL for elementwise ops with broadcasting, and for the copy-shaped ops (expand, permute, slice,
 * concat): one thread per output element, input offsets from strides baked into the source. An
 * elementwise op over tensors stored in segments (kernels/segments.ts) runs one launch per segment; its
 * broadcast operands are bound whole and read at the element's global offset.
 * @module
 */
import { EW } from "../engine/graph/ops/elementwise.ts";
import { broadcastStrides } from "../engine/graph/broadcast.ts";
import { numel, stridesOf, type TensorInfo } from "../engine/graph/types.ts";
import { declare, entry1d, grid, linearIndex, loadF32, type Lowering, storeF32 } from "./kernel.ts";
import { flatRanges, rangeRef } from "./segments.ts";

const WG = 256;

/** WGSL helper functions the expressions of {@link WGSL} call (pow_signed). */
export const PRELUDE = `fn pow_signed(a: f32, b: f32) -> f32 {
  if (a >= 0.0) { return pow(a, b); }
  let r = pow(-a, b);
  if (fract(b * 0.5) == 0.0) { return r; }
  return -r;
}`;

/** Each elementwise op of the graph (engine/graph/ops/elementwise.ts) as a WGSL expression over `a`, `b`, `c` (f32). */
export const WGSL: Record<string, string> = {
  neg: "-a",
  exp: "exp(a)",
  log: "log(a)",
  sqrt: "sqrt(a)",
  rsqrt: "inverseSqrt(a)",
  abs: "abs(a)",
  sign: "sign(a)",
  add: "a + b",
  sub: "a - b",
  mul: "a * b",
  div: "a / b",
  pow: "pow_signed(a, b)",
  maximum: "max(a, b)",
  minimum: "min(a, b)",
  ge: "select(0.0, 1.0, a >= b)",
  gt: "select(0.0, 1.0, a > b)",
  eq: "select(0.0, 1.0, a == b)",
  where: "select(c, b, a != 0.0)",
};

/**
 * WGSL lines that split linear index `i` of `outShape` into coordinates and add them, through each
 * stride list, into offset variables `o0`, `o1`, ... (declared by the caller as `var oK = baseK;`).
 */
export function offsetCode(outShape: readonly number[], strides: readonly (readonly number[])[], i = "gid"): string {
  const lines = [`var r = ${i};`];
  for (let d = outShape.length - 1; d >= 0; d--) {
    const used = strides.some((s) => s[d] !== 0);
    if (!used) {
      if (d > 0) lines.push(`r = r / ${outShape[d]}u;`);
      continue;
    }
    lines.push(`{ let c = r % ${outShape[d]}u; r = r / ${outShape[d]}u;`);
    strides.forEach((s, k) => s[d] !== 0 && lines.push(`  o${k} += c * ${s[d]}u;`));
    lines.push("}");
  }
  return lines.join("\n    ");
}

function ewLowering(name: string): Lowering {
  const expr = WGSL[name];
  if (expr === undefined) throw new Error(`elementwise op "${name}" has no WGSL expression in kernels/elementwise.ts`);
  return ({ inputs, outputs, segments }, ctx) => {
    const out = outputs[0];
    const n = numel(out.shape);
    const strides = inputs.map((t) => broadcastStrides(t.shape, out.shape));
    const vars = ["a", "b", "c"].slice(0, inputs.length);
    // Segmented operands (none but same-shaped ones) split the op into one launch per segment.
    const inSeg = inputs.map((t, k) => {
      const l = segments?.inputs[k];
      if (l && numel(t.shape) !== n) {
        throw new Error(`elementwise "${name}" cannot broadcast a segmented ${t.shape.join("x")} operand`);
      }
      return l;
    });
    const outSeg = segments?.outputs[0];
    const ranges = flatRanges(n, [...inSeg, outSeg], name);
    const code = (len: number, base: number, split: boolean) =>
      `${
        declare([...inputs.map((t, k) => [`in${k}`, t.dtype] as [string, TensorInfo["dtype"]]), [
          "out",
          out.dtype,
        ]])
      }
${PRELUDE}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${len}u) { return; }
  ${split ? `let gi = gid + ${base}u;` : ""}
  ${inputs.map((_, k) => `var o${k} = 0u;`).join(" ")}
  ${offsetCode(out.shape, strides, split ? "gi" : "gid")}
  ${inSeg.map((l, k) => (l && split ? `o${k} = gid;` : "")).join(" ")}
  ${inputs.map((t, k) => `let ${vars[k]} = ${loadF32(`in${k}`, t.dtype, `o${k}`)};`).join("\n  ")}
  ${storeF32("out", out.dtype, outSeg || !split ? "gid" : "gi", `${expr}`)}
}`;
    return {
      launches: ranges.map((r) => ({
        code: code(r.len, r.base, r.seg !== undefined),
        bindings: [
          ...inputs.map((_, k) => rangeRef({ input: k }, inSeg[k], r)),
          rangeRef({ output: 0 }, outSeg, r),
        ],
        workgroups: grid(Math.ceil(r.len / WG), ctx.maxWorkgroupsPerDim),
      })),
    };
  };
}

/** A copy kernel: out[i] = src[base + Σ coord_d · stride_d] over `shape`, written at `dstBase`. */
export function copyCode(
  src: TensorInfo,
  dst: TensorInfo,
  shape: readonly number[],
  strides: readonly number[],
  base: number,
  dstStrides: readonly number[],
  dstBase: number,
): string {
  const n = numel(shape);
  const dst32 = dst.dtype === "f32" || dst.dtype === "i32" || dst.dtype === "u32";
  if (!dst32 || src.dtype !== dst.dtype) {
    const read = loadF32("src", src.dtype, "o0");
    return `${declare([["src", src.dtype], ["dst", dst.dtype]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  var o0 = ${base}u; var o1 = ${dstBase}u;
  ${offsetCode(shape, [strides, dstStrides])}
  ${storeF32("dst", dst.dtype, "o1", read)}
}`;
  }
  return `${declare([["src", src.dtype], ["dst", dst.dtype]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  var o0 = ${base}u; var o1 = ${dstBase}u;
  ${offsetCode(shape, [strides, dstStrides])}
  dst[o1] = src[o0];
}`;
}

function copyLaunch(
  src: TensorInfo,
  dst: TensorInfo,
  shape: readonly number[],
  strides: readonly number[],
  base: number,
  dstStrides: readonly number[],
  dstBase: number,
  inputIndex: number,
  maxPerDim: number,
) {
  return {
    code: copyCode(src, dst, shape, strides, base, dstStrides, dstBase),
    bindings: [{ input: inputIndex }, { output: 0 }],
    workgroups: grid(Math.ceil(numel(shape) / WG), maxPerDim),
  };
}

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  ...Object.fromEntries(Object.keys(EW).map((name) => [name, ewLowering(name)])),
  expand: ({ inputs: [x], outputs: [o] }, ctx) => ({
    launches: [
      copyLaunch(
        x,
        o,
        o.shape,
        broadcastStrides(x.shape, o.shape),
        0,
        stridesOf(o.shape),
        0,
        0,
        ctx.maxWorkgroupsPerDim,
      ),
    ],
  }),
  permute: ({ inputs: [x], outputs: [o], attrs }, ctx) => {
    const st = stridesOf(x.shape);
    const perm = attrs.perm as number[];
    return {
      launches: [
        copyLaunch(x, o, o.shape, perm.map((p) => st[p]), 0, stridesOf(o.shape), 0, 0, ctx.maxWorkgroupsPerDim),
      ],
    };
  },
  slice: ({ inputs: [x], outputs: [o], attrs }, ctx) => {
    const st = stridesOf(x.shape);
    const base = (attrs.start as number) * st[attrs.axis as number];
    return { launches: [copyLaunch(x, o, o.shape, st, base, stridesOf(o.shape), 0, 0, ctx.maxWorkgroupsPerDim)] };
  },
  concat: ({ inputs, outputs: [o], attrs }, ctx) => {
    const axis = attrs.axis as number;
    const ost = stridesOf(o.shape);
    let at = 0;
    const launches = inputs.map((x, k) => {
      const l = copyLaunch(x, o, x.shape, stridesOf(x.shape), 0, ost, at * ost[axis], k, ctx.maxWorkgroupsPerDim);
      at += x.shape[axis];
      return l;
    });
    return { launches };
  },
};
