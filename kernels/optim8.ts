/**
 * WGSL for `adamw_8bit` (bitsandbytes' 8-bit blockwise AdamW; the math and its sources are in
 * engine/quant/optim8.ts): one workgroup of 64 threads per block of 256 elements, each thread one i32 word of each
 * state (four codes) and its four elements. A thread dequantizes and updates its four moments (a last, partial
 * block's missing elements as the CUDA kernel pads them: g = 0, code1 = 128, code2 = 0), the workgroup reduces the
 * block's new absmax values, thread 0 stores them, and every thread writes its param elements and re-quantized codes
 * (the kernel's 7-step binary search over the code book, then its midpoint rule and the first moment's sign fix).
 *
 * The code books are `var<private>` arrays; bias corrections are −expm1(t·ln β) (kernels/optim.ts). A gated op reads
 * the gate through workgroup memory (uniform control flow before the barriers) and writes nothing when it is 0.
 * A param stored in segments is not supported (one binding per tensor).
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import type { Adamw8bitAttrs } from "../engine/graph/ops/optim8.ts";
import { optimTail } from "../engine/graph/ops/optim.ts";
import { OPT8_BLOCK, optim8Maps } from "../engine/quant/optim8.ts";
import { grid, type Lowering } from "./kernel.ts";
import { fl } from "./norm.ts";
import { biasCorrection, EXPM1 } from "./optim.ts";

const WG = OPT8_BLOCK / 4;

const table = (name: string, v: Float32Array) =>
  `var<private> ${name}: array<f32, 256> = array<f32, 256>(${Array.from(v, fl).join(", ")});`;

/** quantize_2D over code book `q` as a WGSL function `name`. */
const search = (name: string, q: string, signed: boolean) =>
  `fn ${name}(x: f32) -> u32 {
  var pivot = 127u;
  var upperPivot = 255u;
  var lowerPivot = 0u;
  var lower = ${signed ? "-1.0" : "0.0"};
  var upper = 1.0;
  var val = ${q}[pivot];
  for (var i = 64u; i > 0u; i = i >> 1u) {
    if (x > val) { lowerPivot = pivot; lower = val; pivot = pivot + i; }
    else { upperPivot = pivot; upper = val; pivot = pivot - i; }
    val = ${q}[pivot];
  }
  if (x > val) { return select(pivot, upperPivot, x > (upper + val) * 0.5); }
  return select(pivot, lowerPivot, x < (lower + val) * 0.5);
}`;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  adamw_8bit: (node, ctx) => {
    const { beta1, beta2, eps, weightDecay, gated } = node.attrs as Adamw8bitAttrs;
    if (node.segments?.inputs.some((s) => s)) {
      throw new Error("adamw_8bit: a param stored in segments (larger than one storage binding) is not supported");
    }
    const n = numel(node.inputs[0].shape), nw = node.inputs[2].shape[0], nb = node.inputs[4].shape[0];
    const tail = optimTail(node.inputs.length, 8, gated);
    const names = ["param", "grad", "st1", "st2", "am1", "am2", "lr", "stp"];
    const types = ["f32", "f32", "i32", "i32", "f32", "f32", "f32", "f32"];
    if (tail.scale !== undefined) names.push("gscale"), types.push("f32");
    if (tail.gate !== undefined) names.push("gate"), types.push("f32");
    const decls = names.map((nm, i) => `@group(0) @binding(${i}) var<storage, read_write> ${nm}: array<${types[i]}>;`);
    const { qmap1, qmap2 } = optim8Maps();
    const f = Math.fround;
    const b1 = f(beta1), b2 = f(beta2), r1 = f(1 - b1), r2 = f(1 - b2);
    const code = `${decls.join("\n")}
${table("Q1", qmap1)}
${table("Q2", qmap2)}
var<workgroup> red1: array<f32, ${WG}>;
var<workgroup> red2: array<f32, ${WG}>;
var<workgroup> okw: f32;
${EXPM1}
${search("search1", "Q1", true)}
${search("search2", "Q2", false)}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let blk = wid.x + wid.y * nwg.x;
  if (blk >= ${nb}u) { return; }
${
      tail.gate !== undefined
        ? `  if (lid.x == 0u) { okw = gate[0]; }
  if (workgroupUniformLoad(&okw) == 0.0) { return; }`
        : ""
    }
  let a = lr[0];
  let t = stp[0];
  let c1 = ${biasCorrection(beta1)};
  let c2 = sqrt(${biasCorrection(beta2)});
  let stepSize = (-a * c2) / c1;
  let gs = ${tail.scale !== undefined ? "gscale[0]" : "1.0"};
  let w = blk * ${WG}u + lid.x;
  var w1 = 0u;
  var w2 = 0u;
  if (w < ${nw}u) { w1 = bitcast<u32>(st1[w]); w2 = bitcast<u32>(st2[w]); }
  let a1 = am1[blk];
  let a2 = am2[blk];
  var s1: array<f32, 4>;
  var s2: array<f32, 4>;
  var m1 = 0.0;
  var m2 = 0.0;
  for (var k = 0u; k < 4u; k++) {
    let i = w * 4u + k;
    var g = 0.0;
    var k1 = 128u;
    var k2 = 0u;
    if (i < ${n}u) { g = grad[i] * gs; k1 = (w1 >> (8u * k)) & 255u; k2 = (w2 >> (8u * k)) & 255u; }
    let v = (Q2[k2] * a2) * ${fl(b2)} + (${fl(r2)} * g) * g;
    let m = (Q1[k1] * a1) * ${fl(b1)} + ${fl(r1)} * g;
    s1[k] = m;
    s2[k] = v;
    m1 = max(m1, abs(m));
    m2 = max(m2, abs(v));
  }
  red1[lid.x] = m1;
  red2[lid.x] = m2;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) {
      red1[lid.x] = max(red1[lid.x], red1[lid.x + s]);
      red2[lid.x] = max(red2[lid.x], red2[lid.x + s]);
    }
    workgroupBarrier();
  }
  let n1 = red1[0];
  let n2 = red2[0];
  if (lid.x == 0u) { am1[blk] = n1; am2[blk] = n2; }
  var o1 = 0u;
  var o2 = 0u;
  for (var k = 0u; k < 4u; k++) {
    let i = w * 4u + k;
    if (i >= ${n}u) { break; }
    var p = param[i] + stepSize * (s1[k] / (sqrt(s2[k]) + c2 * ${fl(f(eps))}));
    ${weightDecay > 0 ? `p = p * (1.0 - a * ${fl(f(weightDecay))});` : ""}
    param[i] = p;
    var q1 = search1(select(s1[k] / n1, 0.0, n1 == 0.0));
    if ((Q1[q1] < 0.0) != (s1[k] < 0.0)) { q1 = select(q1 - 1u, q1 + 1u, s1[k] > 0.0) & 255u; }
    let q2 = search2(select(s2[k] / n2, 0.0, n2 == 0.0));
    o1 = o1 | (q1 << (8u * k));
    o2 = o2 | (q2 << (8u * k));
  }
  if (w < ${nw}u) { st1[w] = bitcast<i32>(o1); st2[w] = bitcast<i32>(o2); }
}`;
    return {
      launches: [{
        code,
        bindings: node.inputs.map((_, i) => ({ input: i })),
        workgroups: grid(nb, ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
