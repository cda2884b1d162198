/**
 * The subgroup matmul variant (`MatmulConfig.sg`): C[z, M, N] = op(A) · op(B), f32 accumulation.
 *
 * A workgroup is wgY subgroups of S = wgX lanes (S the adapter's fixed subgroup size; the device
 * probe checks lane = local invocation index mod S, so a row `lid.y` of the workgroup is one
 * subgroup and lane = `lid.x`). Subgroup y owns rows y·tm … of a BM×BN tile (BM = wgY·tm,
 * BN = S·tn); each lane a tm×tn register block. K is walked in chunks of S: lane l loads
 * A[row][k0 + l] of its subgroup's tm rows (one coalesced load a row per S k steps), and at step kk
 * every lane takes A[row][k0 + kk] from lane kk with `subgroupShuffle` — A never goes through
 * workgroup memory and no barrier is needed. B is read straight from storage, 4-wide where the
 * layout allows: along N for B, along K for Bᵀ (x·Wᵀ, 4 k steps a load), as in the register form of
 * kernels/matmul_gen.ts.
 *
 * With `emulate` the shuffles go through workgroup memory (a store of each lane's fragment, a
 * barrier, reads by lane index), so the same indexing runs — and is checked against the reference —
 * on adapters without subgroups (lavapipe). All control flow that reaches a shuffle is uniform: out
 * of range tiles run clamped and skip their stores instead of returning.
 * @module
 */
import { type MatmulAttrs, matmulDims } from "../engine/graph/ops/matmul.ts";
import { numel, type TensorInfo } from "../engine/graph/types.ts";
import { type BindingRef, grid, type KernelContext, type Lowered, storeF32 } from "./kernel.ts";
import {
  type Access,
  axisIndex,
  batchOffset,
  configLabel,
  configProblem,
  decl,
  load4,
  loadOperand,
  type MatmulConfig,
  vectorizable,
} from "./matmul_gen.ts";

/** WGSL of the subgroup matmul with config `cfg` (`cfg.sg`, wgX = subgroup size), C written to `cBinding`. */
export function generateMatmulSg(
  inputs: readonly TensorInfo[],
  out: TensorInfo,
  attrs: MatmulAttrs,
  cfg: MatmulConfig,
  ctx: KernelContext,
  cBinding: BindingRef = { output: 0 },
  opts: { emulate?: boolean } = {},
): Lowered {
  const [a, b] = inputs;
  const problem = configProblem({ ...cfg, sg: true }, ctx);
  if (problem) throw new Error(`matmul config ${configLabel(cfg)} cannot run here: ${problem}`);
  if (out.dtype === "f16" || out.dtype === "bf16") {
    throw new Error(`the matmul kernel stores f32/i32/u32 outputs, got ${out.dtype}; store f32 and cast after`);
  }
  const { batch, M, K, N } = matmulDims(a, b, attrs);
  const { wgX: S, wgY: W, tm, tn } = cfg;
  const BM = W * tm, BN = S * tn;
  const tilesN = Math.ceil(N / BN), tilesM = Math.ceil(M / BM);
  const T = Math.max(1, tilesN * tilesM * numel(batch));
  const A: Access = {
    name: "A",
    dtype: a.dtype,
    so: attrs.transA ? 1 : K,
    sk: attrs.transA ? M : 1,
    dim: M,
    mode: "none",
  };
  const B: Access = {
    name: "B",
    dtype: b.dtype,
    so: attrs.transB ? K : 1,
    sk: attrs.transB ? 1 : N,
    dim: N,
    mode: "none",
  };
  if (cfg.vec && vectorizable(b.dtype)) {
    if (B.so === 1 && N % 4 === 0 && tn % 4 === 0) B.mode = "o";
    else if (B.sk === 1 && K % 4 === 0 && S % 4 === 0) B.mode = "k"; // Bᵀ (x·Wᵀ): 4 k steps a load
  }
  const KU = B.mode === "k" ? 4 : 1;
  const vecC = out.dtype === "f32" && tn % 4 === 0 && N % 4 === 0 && cfg.vec;
  const head = [decl(0, "A", a.dtype, false), decl(1, "B", b.dtype, B.mode !== "none"), decl(2, "C", out.dtype, vecC)];
  if (opts.emulate) head.push(`var<workgroup> Ash: array<f32, ${BM * S}>;`);
  const body: string[] = [];
  const L = (s: string) => body.push(`  ${s}`);
  if (opts.emulate) L(`let lane = lid.x;`);
  L(`let tile0 = wid.x + wid.y * nwg.x;`);
  L(`let live = tile0 < ${T}u;`);
  L(`let tile = min(tile0, ${T - 1}u);`);
  L(`let z = tile / ${tilesN * tilesM}u;`);
  L(`let rb = ((tile / ${tilesN}u) % ${tilesM}u) * ${BM}u;`);
  L(`let cb = (tile % ${tilesN}u) * ${BN}u;`);
  L(`let oa = ${batchOffset(batch, a.shape.slice(0, -2), M * K)};`);
  L(`let ob = ${batchOffset(batch, b.shape.slice(0, -2), K * N)};`);
  const rowOf = (i: number) => `lid.y * ${tm}u + ${i}u`;
  const colOf = (j: number) => axisIndex(j, "lid.x", S, tn);
  for (let i = 0; i < tm; i++) L(`let pa${i} = oa + min(rb + ${rowOf(i)}, ${M - 1}u) * ${A.so}u;`);
  const bStep = B.mode === "o" ? 4 : 1;
  for (let j = 0; j < tn; j += bStep) {
    L(`let pb${j} = ob + min(cb + ${colOf(j)}, ${N - bStep}u) * ${B.so}u;`);
  }
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) L(`var c${i}_${j} = 0.0;`);
  // Whole chunks of S k steps (a constant trip count the compiler can unroll), then the tail chunk.
  const KF = K - (K % S);
  const chunk = (from: string, to: number, tail: boolean) => {
    body.push(`  for (var k0 = ${from}; k0 < ${to}u; k0 += ${S}u) {`);
    L(tail ? `  let ka = min(k0 + lane, ${K - 1}u);` : `  let ka = k0 + lane;`);
    for (let i = 0; i < tm; i++) {
      let v = loadOperand(A, `pa${i} + ka${A.sk === 1 ? "" : ` * ${A.sk}u`}`);
      if (tail) v = `select(0.0, ${v}, k0 + lane < ${K}u)`;
      if (opts.emulate) L(`  Ash[(${rowOf(i)}) * ${S}u + lane] = ${v};`);
      else L(`  let a${i} = ${v};`);
    }
    if (opts.emulate) L(`  workgroupBarrier();`);
    body.push(`    for (var kk = 0u; kk < ${tail ? K % S : S}u; kk += ${KU}u) {`);
    L(`    let k = k0 + kk;`);
    const bv: string[][] = []; // bv[j][u]: column j at k + u
    for (let j = 0; j < tn; j += bStep) {
      if (B.mode === "o") {
        const l = load4(B, `vb${j}`, `pb${j} + k * ${B.sk}u`);
        l.lines.forEach((s) => L(`    ${s}`));
        bv.push(...l.vals.map((v) => [v]));
      } else if (B.mode === "k") {
        const l = load4(B, `vb${j}`, `pb${j} + k`);
        l.lines.forEach((s) => L(`    ${s}`));
        bv.push(l.vals);
      } else {
        L(`    let b${j} = ${loadOperand(B, `pb${j} + k${B.sk === 1 ? "" : ` * ${B.sk}u`}`)};`);
        bv.push([`b${j}`]);
      }
    }
    for (let u = 0; u < KU; u++) {
      const kk = u ? `kk + ${u}u` : "kk";
      for (let i = 0; i < tm; i++) {
        L(`    let x${i}_${u} = ${
          opts.emulate ? `Ash[(${rowOf(i)}) * ${S}u + ${kk}]` : `subgroupShuffle(a${i}, ${kk})`
        };`);
      }
    }
    for (let i = 0; i < tm; i++) {
      for (let j = 0; j < tn; j++) {
        let e = `c${i}_${j}`;
        for (let u = 0; u < KU; u++) e = `fma(x${i}_${u}, ${bv[j][u]}, ${e})`;
        L(`    c${i}_${j} = ${e};`);
      }
    }
    L(`  }`);
    if (opts.emulate) L(`  workgroupBarrier();`);
    L(`}`);
  };
  if (KF) chunk("0u", KF, false);
  if (KF < K) chunk(`${KF}u`, K, true);
  L(`let oc = z * ${M * N}u;`);
  for (let i = 0; i < tm; i++) {
    L(`let r${i} = rb + ${rowOf(i)};`);
    for (let j = 0; j < tn; j += vecC ? 4 : 1) {
      const c = `cb + ${colOf(j)}`;
      const guard = `live && r${i} < ${M}u && ${c} < ${N}u`;
      const at = `oc + r${i} * ${N}u + ${c}`;
      if (vecC) {
        const v = `vec4<f32>(c${i}_${j}, c${i}_${j + 1}, c${i}_${j + 2}, c${i}_${j + 3})`;
        L(`if (${guard}) { C[(${at}) >> 2u] = ${v}; }`);
      } else {
        L(`if (${guard}) { ${storeF32("C", out.dtype, at, `c${i}_${j}`)} }`);
      }
    }
  }
  const lane = opts.emulate ? "" : ",\n        @builtin(subgroup_invocation_id) lane: u32";
  const code = `${head.join("\n")}
@compute @workgroup_size(${S}, ${W})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>${lane}) {
${body.join("\n")}
}`;
  return {
    launches: [{
      code,
      bindings: [{ input: 0 }, { input: 1 }, cBinding],
      workgroups: grid(T, ctx.maxWorkgroupsPerDim),
    }],
  };
}
