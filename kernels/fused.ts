/**
 * WGSL for fused groups (planned by engine/exec/fuse.ts): a chain of elementwise ops computed in registers as one
 * kernel, alone, as the epilogue of a matmul or a reduction (applied to each result before it is stored), or as
 * the prologue of a reduction (computing each element the reduction reads). Values inside a group are f32 and
 * never touch memory; only the group's outputs are stored.
 *
 * The group is one WGSL function of a linear index `i` (and, for an epilogue, the anchor's result `s`): external
 * operands are loaded at `i`, or through broadcast strides of the consuming op's shape; each op's value is a `let`;
 * the stored values are written at `i` (an epilogue) or the reduced value returned (a prologue).
 *
 * Bindings: the anchor's bound operands first, then the group's external inputs (`x0`, `x1`, …), then its stored
 * outputs (`y0`, `y1`, …), matching a node whose inputs are `[...anchor inputs, ...externals]`.
 * @module
 */
import type { MatmulAttrs } from "../engine/graph/ops/matmul.ts";
import { actKind } from "../engine/graph/ops/activation.ts";
import { EW } from "../engine/graph/ops/elementwise.ts";
import { broadcastStrides } from "../engine/graph/broadcast.ts";
import { type Attrs, numel, type TensorInfo } from "../engine/graph/types.ts";
import { declare, entry1d, grid, type KernelContext, linearIndex, loadF32, type Lowered, storeF32 } from "./kernel.ts";
import { offsetCode, PRELUDE as EW_PRELUDE, WGSL } from "./elementwise.ts";
import { FN, PRELUDE as ACT_PRELUDE } from "./activation.ts";
import { generateMatmul, pickMatmulConfig } from "./matmul.ts";
import type { MatmulConfig } from "./matmul_gen.ts";
import { reduceKernel, type ReduceKind } from "./reduce.ts";

const WG = 256;

const ACT_OPS = ["silu", "gelu", "sigmoid", "tanh", "relu", "swiglu", "geglu"];

/** Ops a fused group may hold: every elementwise op, the activations and their backward ops, and cast. */
export const FUSIBLE_OPS: ReadonlySet<string> = new Set([
  ...Object.keys(EW),
  ...ACT_OPS,
  ...ACT_OPS.map((o) => `${o}_bwd`),
  "cast",
]);

/** Ops that can carry an epilogue: the matmul and the reductions (f32 results). */
export const ANCHOR_OPS: ReadonlySet<string> = new Set(["matmul", "sum", "mean", "max"]);

/** An operand of a fused op: an external input (binding `x<ext>`) or a value computed earlier in the group. */
export type FusedRef = { ext: number } | { val: number };

/** One op of a fused group: its operands (with the shape each has there), its output shape and value ids. */
export interface FusedOp {
  readonly op: string;
  readonly attrs: Attrs;
  readonly inputs: readonly { ref: FusedRef; shape: readonly number[] }[];
  readonly shape: readonly number[];
  readonly outputs: readonly number[];
}

/** A fused group as the kernel generator sees it (no graph: ids are plain numbers, shapes are static). */
export interface FusedSpec {
  /** External inputs, bound after the anchor's bound operands. */
  readonly exts: readonly TensorInfo[];
  /** The matmul or reduction whose result seeds the epilogue as value `seed`. */
  readonly anchor?: {
    readonly op: string;
    readonly attrs: Attrs;
    readonly inputs: readonly TensorInfo[];
    readonly output: TensorInfo;
    readonly seed: number;
  };
  /** Ops computing the reduction anchor's input (its value `result`) element by element. */
  readonly prologue?: { readonly ops: readonly FusedOp[]; readonly result: number };
  /** The group's ops (the epilogue when there is an anchor). */
  readonly ops: readonly FusedOp[];
  /** Values stored, in binding order (`y0`, `y1`, …); the seed may be one of them. */
  readonly stores: readonly { readonly val: number; readonly info: TensorInfo }[];
}

/** How many of the anchor's operands are bound (a reduction with a prologue computes its input instead). */
export function boundAnchorInputs(spec: Pick<FusedSpec, "anchor" | "prologue">): number {
  if (!spec.anchor) return 0;
  return spec.prologue ? 0 : spec.anchor.op === "matmul" ? 2 : 1;
}

/** The WGSL body of a group's ops at index `i`: loads, one `let` per value; and the helper functions it needs. */
function opsBody(ops: readonly FusedOp[], exts: readonly TensorInfo[]): { lines: string[]; helpers: Set<string> } {
  const lines: string[] = [];
  const helpers = new Set<string>();
  const loaded = new Map<string, string>();
  const operand = (o: FusedOp, k: number): string => {
    const { ref, shape } = o.inputs[k];
    if ("val" in ref) return `v${ref.val}`;
    const t = exts[ref.ext];
    const direct = numel(shape) === numel(o.shape);
    const strides = direct ? [] : broadcastStrides(shape, o.shape);
    const key = direct ? `${ref.ext}` : `${ref.ext}:${o.shape.join()}:${strides.join()}`;
    let name = loaded.get(key);
    if (name) return name;
    name = `e${loaded.size}`;
    loaded.set(key, name);
    if (direct) lines.push(`let ${name} = ${loadF32(`x${ref.ext}`, t.dtype, "i")};`);
    else {
      lines.push(`var ${name}: f32;`);
      lines.push(
        `{ var o0 = 0u; ${offsetCode(o.shape, [strides], "i")} ${name} = ${loadF32(`x${ref.ext}`, t.dtype, "o0")}; }`,
      );
    }
    return name;
  };
  for (const o of ops) {
    const args = o.inputs.map((_, k) => operand(o, k));
    const [y] = o.outputs;
    if (o.op === "cast") {
      lines.push(`let v${y} = ${args[0]};`);
      continue;
    }
    const expr = WGSL[o.op];
    if (expr !== undefined) {
      if (o.op === "pow") helpers.add(EW_PRELUDE);
      const vars = ["a", "b", "c"].map((v, k) => (k < args.length ? `let ${v} = ${args[k]}; ` : "")).join("");
      lines.push(`var v${y}: f32;`, `{ ${vars}v${y} = ${expr}; }`);
      continue;
    }
    const kind = actKind(o.op, o.attrs);
    helpers.add(ACT_PRELUDE);
    helpers.add(`fn act_${kind}(x: f32) -> f32 { return ${FN[kind].f}; }
fn dact_${kind}(x: f32) -> f32 { return ${FN[kind].df}; }`);
    switch (o.op) {
      case "swiglu":
      case "geglu":
        lines.push(`let v${y} = act_${kind}(${args[0]}) * ${args[1]};`);
        break;
      case "swiglu_bwd":
      case "geglu_bwd":
        lines.push(`let v${y} = ${args[0]} * ${args[2]} * dact_${kind}(${args[1]});`);
        lines.push(`let v${o.outputs[1]} = ${args[0]} * act_${kind}(${args[1]});`);
        break;
      default:
        lines.push(
          o.op.endsWith("_bwd")
            ? `let v${y} = ${args[0]} * dact_${kind}(${args[1]});`
            : `let v${y} = act_${kind}(${args[0]});`,
        );
    }
  }
  return { lines, helpers };
}

/** Storage declarations of the externals and stored outputs, numbered from `base`. */
function groupDecls(spec: FusedSpec, base: number): string {
  const list = [
    ...spec.exts.map((t, k) => [`x${k}`, t.dtype] as const),
    ...spec.stores.map((s, k) => [`y${k}`, s.info.dtype] as const),
  ];
  return list.map(([name, dtype], k) => declare([[name, dtype]]).replace("@binding(0)", `@binding(${base + k})`)).join(
    "\n",
  );
}

/** The group's stored-output bindings and external-input bindings after `nAnchor` bound anchor operands. */
function groupBindings(spec: FusedSpec, nAnchor: number) {
  return [
    ...spec.exts.map((_, k) => ({ input: nAnchor + k })),
    ...spec.stores.map((_, k) => ({ output: k })),
  ];
}

/** `fn epi(i: u32, s: f32)`: the group's values at index i, its outputs stored (the seed is `s`). */
function epilogueFn(spec: FusedSpec, helpers: Set<string>): string {
  const seed = spec.anchor?.seed;
  const body = opsBody(spec.ops, spec.exts);
  body.helpers.forEach((h) => helpers.add(h));
  const stores = spec.stores.map((st, k) => storeF32(`y${k}`, st.info.dtype, "i", `v${st.val}`));
  return `fn epi(i: u32, s: f32) {
  ${seed !== undefined ? `let v${seed} = s;` : ""}
  ${[...body.lines, ...stores].join("\n  ")}
}`;
}

/** `fn pro(i: u32) -> f32`: the prologue's result at index i. */
function prologueFn(spec: FusedSpec, helpers: Set<string>): string {
  const p = spec.prologue!;
  const body = opsBody(p.ops, spec.exts);
  body.helpers.forEach((h) => helpers.add(h));
  return `fn pro(i: u32) -> f32 {
  ${body.lines.join("\n  ")}
  return v${p.result};
}`;
}

/**
 * Largest register block (tm·tn accumulators a thread) that takes the epilogue in the matmul kernel. The epilogue is
 * inlined once per accumulator, and on lavapipe each copy's loads and stores (addresses that differ between
 * invocations) become loops over the SIMD lanes: a [64, 256] × [256, 256] matmul with a residual add, 16×32 blocks,
 * took LLVM 15–60 s to compile at its first dispatch (2 s without the epilogue), so a 4-layer model's first step ran
 * for minutes. A larger block (the software adapters' register blocks) stores its product with 4-wide stores into
 * the group's first output, and a second launch applies the epilogue there element by element (each thread reads
 * the product at its index before it stores anything), so no scratch is needed.
 */
export const MAX_EPILOGUE_BLOCK = 16;

/** A matmul group with a large register block as two launches: the matmul into `y0`, then the epilogue over it. */
function splitEpilogue(
  spec: FusedSpec,
  a: NonNullable<FusedSpec["anchor"]>,
  attrs: MatmulAttrs,
  cfg: MatmulConfig,
  helpers: Set<string>,
  epi: string,
  ctx: KernelContext,
): Lowered {
  const n = numel(a.output.shape);
  if (numel(spec.stores[0].info.shape) !== n) {
    throw new Error("internal: a matmul epilogue stores at the product's size");
  }
  const mm = generateMatmul(a.inputs, a.output, attrs, cfg, ctx, { output: 0 });
  const code = `${groupDecls(spec, 0)}
${[...helpers].join("\n")}
${epi}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  epi(gid, y0[gid]);
}`;
  const epilogue = {
    code,
    bindings: groupBindings(spec, 2),
    workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
  };
  return { launches: [...mm.launches, epilogue] };
}

/** Lowers a fused group to one launch (two for a matmul with a large register block: {@link MAX_EPILOGUE_BLOCK}). */
export function lowerFused(spec: FusedSpec, ctx: KernelContext): Lowered {
  for (const st of spec.stores) {
    if (st.info.dtype !== "f32") throw new Error(`a fused group stores f32 values, got ${st.info.dtype}`);
  }
  const helpers = new Set<string>();
  const a = spec.anchor;
  if (!a) {
    const n = numel(spec.ops[spec.ops.length - 1].shape);
    const body = opsBody(spec.ops, spec.exts);
    const stores = spec.stores.map((st, k) => storeF32(`y${k}`, st.info.dtype, "i", `v${st.val}`));
    const code = `${groupDecls(spec, 0)}
${[...body.helpers].join("\n")}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let i = gid;
  ${[...body.lines, ...stores].join("\n  ")}
}`;
    return {
      launches: [{
        code,
        bindings: groupBindings(spec, 0),
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  }
  const nA = boundAnchorInputs(spec);
  const epi = epilogueFn(spec, helpers);
  if (a.op === "matmul") {
    if (a.output.dtype !== "f32") throw new Error(`a fused matmul stores f32, got ${a.output.dtype}`);
    const attrs = a.attrs as unknown as MatmulAttrs;
    const cfg = pickMatmulConfig(a.inputs[0], a.inputs[1], attrs, ctx);
    if (cfg.tm * cfg.tn > MAX_EPILOGUE_BLOCK) return splitEpilogue(spec, a, attrs, cfg, helpers, epi, ctx);
    return generateMatmul(a.inputs, a.output, attrs, cfg, ctx, { output: 0 }, false, {
      code: `${groupDecls(spec, 2)}\n${[...helpers].join("\n")}\n${epi}`,
      call: (idx, val) => `epi(${idx}, ${val});`,
      bindings: groupBindings(spec, 2),
    });
  }
  const pro = spec.prologue ? prologueFn(spec, helpers) : "";
  const x = a.inputs[0];
  return reduceKernel(a.op as ReduceKind, x, a.output, a.attrs.axes as number[], ctx, {
    code: `${spec.prologue ? "" : declare([["src", x.dtype]])}
${groupDecls(spec, nA)}
${[...helpers].join("\n")}
${pro}
${epi}`,
    load: (idx) => (spec.prologue ? `pro(${idx})` : loadF32("src", x.dtype, idx)),
    store: (idx, val) => `epi(${idx}, ${val});`,
    bindings: [...(spec.prologue ? [] : [{ input: 0 }]), ...groupBindings(spec, nA)],
  });
}
