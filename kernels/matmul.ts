/**
 * WGSL matmul. (Naive baseline: one thread per output element; the tuned kernel replaces it.)
 * @module
 */
import { matmulDims, type MatmulAttrs } from "../engine/graph/ops/matmul.ts";
import { numel, stridesOf } from "../engine/graph/types.ts";
import { declare, grid, loadF32, type Lowering, storeF32 } from "./kernel.ts";

const WG = 64;

/** Naive matmul lowering: the baseline the tuned kernel is benchmarked against. */
export const naiveMatmul: Lowering<MatmulAttrs> = ({ inputs: [a, b], outputs: [o], attrs }, ctx) => {
  const { batch, M, K, N } = matmulDims(a, b, attrs);
  const nb = numel(batch);
  const bst = stridesOf(batch);
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  const off = (inBatch: readonly number[], mat: number) => {
    const lines: string[] = [];
    const d0 = batch.length - inBatch.length;
    const ist = stridesOf(inBatch);
    for (let d = 0; d < batch.length; d++) {
      if (d < d0 || inBatch[d - d0] === 1) continue;
      lines.push(`((z / ${bst[d]}u) % ${batch[d]}u) * ${ist[d - d0] * mat}u`);
    }
    return lines.length ? lines.join(" + ") : "0u";
  };
  const ai = attrs.transA ? `oa + k * ${M}u + i` : `oa + i * ${K}u + k`;
  const bi = attrs.transB ? `ob + j * ${K}u + k` : `ob + k * ${N}u + j`;
  const total = nb * M * N;
  const code = `${declare([["A", a.dtype], ["B", b.dtype], ["C", o.dtype]])}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = (wid.x + wid.y * nwg.x) * ${WG}u + lid.x;
  if (gid >= ${total}u) { return; }
  let z = gid / ${M * N}u;
  let i = (gid / ${N}u) % ${M}u;
  let j = gid % ${N}u;
  let oa = ${off(aBatch, M * K)};
  let ob = ${off(bBatch, K * N)};
  var acc = 0.0;
  for (var k = 0u; k < ${K}u; k++) {
    acc += ${loadF32("A", a.dtype, ai)} * ${loadF32("B", b.dtype, bi)};
  }
  ${storeF32("C", o.dtype, "gid", "acc")}
}`;
  return {
    launches: [{
      code,
      bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
      workgroups: grid(Math.ceil(total / WG), ctx.maxWorkgroupsPerDim),
    }],
  };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  matmul: naiveMatmul as Lowering,
};
