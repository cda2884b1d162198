/**
 * Conformance cases of the attention family: small shapes with L not a multiple of the kernels'
 * blocks, D = 5..256, grouped-query and plain multi-head, sliding window, soft-capping, and segments
 * (padding and packing). Every case differentiates q, k and v, so finite differences check the
 * `attention_bwd` rule and the WebGPU kernels are compared with the reference for o, lse and grads.
 * @module
 */
import type { OpCase, Operand } from "./testing.ts";
import { attention, type AttentionOptions } from "./attention.ts";
import type { Tensor } from "../graph.ts";

const f = (shape: number[], range: [number, number] = [-1, 1]): Operand => ({ shape, grad: true, range });

/** Segment ids [B, L]: row 0 packs three sequences (1, 2, 3), row 1 is one sequence right-padded with 0. */
export function packedAndPadded(L: number): number[] {
  const a = Math.max(1, Math.floor(L / 3)), b = Math.max(a + 1, Math.floor((2 * L) / 3));
  const packed = Array.from({ length: L }, (_, i) => (i < a ? 1 : i < b ? 2 : 3));
  const padded = Array.from({ length: L }, (_, i) => (i < L - Math.max(1, Math.floor(L / 4)) ? 1 : 0));
  return [...packed, ...padded];
}

interface Spec {
  B?: number;
  L: number;
  Hq: number;
  Hkv: number;
  D: number;
  opts?: Omit<AttentionOptions, "segments">;
  segments?: boolean;
  /** Which outputs the case returns (default both, so the loss reaches lse too). */
  out?: "o" | "both";
  range?: [number, number];
  tol?: number;
}

function attnCase(name: string, s: Spec): OpCase {
  const B = s.B ?? 2;
  const operands: Record<string, Operand> = {
    q: f([B, s.L, s.Hq, s.D], s.range),
    k: f([B, s.L, s.Hkv, s.D], s.range),
    v: f([B, s.L, s.Hkv, s.D]),
  };
  if (s.segments) operands.seg = { shape: [B, s.L], dtype: "i32", data: packedAndPadded(s.L).slice(0, B * s.L) };
  return {
    name: `attention ${name}`,
    operands,
    tol: s.tol,
    build: (t: Record<string, Tensor>) => {
      const { o, lse } = attention(t.q, t.k, t.v, { ...s.opts, segments: t.seg });
      return s.out === "o" ? o : [o, lse];
    },
  };
}

/** Cases for the attention family. */
export const cases: OpCase[] = [
  attnCase("mha L=5 D=8", { L: 5, Hq: 2, Hkv: 2, D: 8 }),
  attnCase("gqa L=37 D=16", { L: 37, Hq: 4, Hkv: 2, D: 16 }),
  attnCase("gqa L=11 D=16 o only", { L: 11, Hq: 4, Hkv: 2, D: 16, out: "o" }),
  attnCase("window 5 L=23", { L: 23, Hq: 4, Hkv: 2, D: 8, opts: { window: 5 } }),
  attnCase("softcap 2 L=19", { L: 19, Hq: 2, Hkv: 1, D: 8, opts: { softcap: 2 }, range: [-2, 2] }),
  attnCase("segments packed + padded L=13", { L: 13, Hq: 4, Hkv: 2, D: 8, segments: true }),
  attnCase("non-causal segments L=9", { L: 9, Hq: 2, Hkv: 2, D: 8, segments: true, opts: { causal: false } }),
  attnCase("non-causal window scale L=17", {
    L: 17,
    Hq: 4,
    Hkv: 1,
    D: 8,
    opts: { causal: false, window: 4, scale: 0.5 },
  }),
  attnCase("D=5 L=7", { L: 7, Hq: 3, Hkv: 1, D: 5 }),
  attnCase("D=6 segments softcap L=10", { L: 10, Hq: 2, Hkv: 2, D: 6, segments: true, opts: { softcap: 1.5 } }),
  attnCase("multi-block L=70 window softcap segments", {
    L: 70,
    Hq: 2,
    Hkv: 1,
    D: 8,
    segments: true,
    opts: { window: 7, softcap: 3 },
    range: [-2, 2],
  }),
  attnCase("multi-block L=67 D=12", { B: 1, L: 67, Hq: 2, Hkv: 2, D: 12 }),
  attnCase("long L=131 gqa window", { B: 1, L: 131, Hq: 4, Hkv: 2, D: 8, opts: { window: 40 } }),
  attnCase("D=128 L=9", { B: 1, L: 9, Hq: 2, Hkv: 1, D: 128 }),
  attnCase("D=256 L=67 segments", { L: 67, Hq: 2, Hkv: 1, D: 256, segments: true }),
];
