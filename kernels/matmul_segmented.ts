/**
 * Matmul with a 2-D weight stored in segments of whole rows (kernels/segments.ts): an LM head or embedding too
 * large for one storage binding, used outside the fused LM head + cross-entropy (evaluation and generation
 * logits). Every other matmul goes to the tuned kernel unchanged.
 *
 * - `A · Bᵀ` with B [N, K] in row blocks: each block's product [.., M, vs] goes through scratch into its columns
 *   of C.
 * - `A · B` with B [K, N] in row blocks: C = Σ_s A[:, k-block s] · B_s, the first block written, the others
 *   continuing its fma chains in place (generateMatmul's `accumulate`), so the bits are those of the whole product.
 *
 * A or C segmented, a batched or bf16-output B, or Aᵀ with B unsplit along N are not handled: binding them whole
 * fails at compile time naming the tensor (engine/exec/webgpu_memory.ts).
 * @module
 */
import { type MatmulAttrs, matmulDims } from "../engine/graph/ops/matmul.ts";
import { numel, type TensorInfo } from "../engine/graph/types.ts";
import { type BindingRef, embedLowered, grid, type KernelContext, type Launch, type Lowering } from "./kernel.ts";
import { copyCode } from "./elementwise.ts";
import { generateMatmul, pickMatmulConfig, tunedMatmul } from "./matmul.ts";
import { segmentElems, segmentRows } from "./segments.ts";

const f32 = (shape: number[]): TensorInfo => ({ shape, dtype: "f32" });

/** A strided copy of a [rows, cols] block between two bindings. */
function copy(
  src: TensorInfo,
  from: BindingRef,
  fromStrides: number[],
  fromBase: number,
  to: BindingRef,
  toStrides: number[],
  toBase: number,
  shape: number[],
  ctx: KernelContext,
): Launch {
  const code = copyCode(src, f32([numel(shape)]), shape, fromStrides, fromBase, toStrides, toBase);
  return { code, bindings: [from, to], workgroups: grid(Math.ceil(numel(shape) / 256), ctx.maxWorkgroupsPerDim) };
}

/** The matmul lowering: segmented 2-D weights by blocks, everything else by the tuned kernel. */
export const segmentedMatmul: Lowering<MatmulAttrs> = (node, ctx) => {
  const seg = node.segments;
  const lb = seg?.inputs[1];
  const [a, b] = node.inputs;
  if (!lb || seg!.inputs[0] || seg!.outputs[0] || b.shape.length !== 2 || (!node.attrs.transB && node.attrs.transA)) {
    return tunedMatmul(node, ctx);
  }
  const attrs = node.attrs;
  const { batch, M, K, N } = matmulDims(a, b, attrs);
  const P = numel(batch) * M;
  const rows = segmentRows(lb, b.shape[1], "matmul weight");
  const blocks = Array.from({ length: lb.count }, (_, s) => ({ r0: s * rows, n: segmentElems(lb, s) / b.shape[1] }));
  const scratch: number[] = [];
  const launches: Launch[] = [];
  const io = (r: BindingRef) => ("input" in r ? `i${r.input}` : "output" in r ? "o" : "s");
  if (attrs.transB) {
    // C[.., :, r0:r0+n] = A · B_sᵀ, through scratch 0 ([P, n]).
    scratch.push(P * rows * 4);
    blocks.forEach(({ r0, n }, s) => {
      const bs: TensorInfo = { shape: [n, K], dtype: b.dtype };
      const mm = tunedMatmul({ inputs: [a, bs], outputs: [f32([...batch, M, n])], attrs }, ctx);
      const tmp: BindingRef = { scratch: 0, size: P * n * 4 };
      const map = (r: BindingRef) => (io(r) === "i0" ? { input: 0 } : io(r) === "i1" ? { input: 1, segment: s } : tmp);
      launches.push(...embedLowered(mm, map, scratch));
      launches.push(copy(f32([P, n]), tmp, [n, 1], 0, { output: 0 }, [N, 1], r0, [P, n], ctx));
    });
    return { launches, scratch };
  }
  // C = Σ_s A[:, r0:r0+n] · B_s, A's columns copied dense into scratch 0 ([P, n]).
  scratch.push(P * rows * 4);
  blocks.forEach(({ r0, n }, s) => {
    const tmp: BindingRef = { scratch: 0, size: P * n * 4 };
    launches.push(copy(a, { input: 0 }, [K, 1], r0, tmp, [n, 1], 0, [P, n], ctx));
    const ins = [f32([P, n]), { shape: [n, N], dtype: b.dtype }];
    const mm = s === 0
      ? tunedMatmul({ inputs: ins, outputs: [f32([P, N])], attrs }, ctx)
      : generateMatmul(ins, f32([P, N]), attrs, pickMatmulConfig(ins[0], ins[1], attrs, ctx), ctx, { output: 0 }, true);
    const map = (r: BindingRef) => (io(r) === "i0" ? tmp : io(r) === "i1" ? { input: 1, segment: s } : { output: 0 });
    launches.push(...embedLowered(mm, map, scratch));
  });
  return { launches, scratch };
};
