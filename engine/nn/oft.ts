/**
 * OFT (orthogonal fine-tuning) as PEFT 0.21 computes it (`peft/tuners/oft/layer.py`), set up as LLaMA-Factory's
 * `_setup_lora_tuning` does for finetuning_type oft (r = oft_rank, oft_block_size, target_modules from oft_target,
 * module_dropout): each targeted linear's input x [..., in] is cut into r blocks of b features and each block is
 * rotated, x_i ← x_i · R_i, before the frozen linear. R_i is the Cayley transform of a skew-symmetric Q_i built from
 * the trainable `oft_R.weight` [r, b(b−1)/2] (its upper triangle, row-major: torch.triu_indices), approximated by
 * PEFT's default Neumann series with 5 terms: R = I + 2Q + 2Q² + 2Q³ + Q⁴. The weights start at zero (R = I), so a new
 * adapter computes what the base does. In PEFT 0.21 the Linear layer never applies `module_dropout` (its dropout
 * module is built but not called), so here it is recorded in the config and has no effect either.
 *
 * PEFT's variants, which come with a PEFT adapter (LLaMA-Factory's OFT arguments build neither):
 * - `block_share`: one weight row [1, b(b−1)/2] and one R shared by all r blocks of a layer.
 * - `coft` (constrained OFT) with `eps`: `OFTRotationModule.forward` first replaces the weights in place (no gradient)
 *   by `_project_batch`: each row's skew-symmetric matrix (Frobenius norm √2·‖row‖) is rescaled to norm
 *   ε' = eps / √rows when it is larger, so R stays within ε' of I; R and the gradients are then those of the projected
 *   weights. Here the forward uses W + stop_gradient(P(W) − W) (P's values, the gradient as with respect to P), and a
 *   training step first projects the stored weights ({@link OftAdapter.beforeStep}), so the optimizer steps from P
 *   as PEFT's does. Merging projects first, as PEFT's `get_weight` does.
 *
 * Adapters are read and written as PEFT's files: adapter_config.json (peft_type "OFT") and adapter_model.safetensors
 * with `base_model.model.<module>.oft_R.weight`.
 * @module
 */
import {
  add,
  assign,
  cast,
  div,
  ge,
  Graph,
  matmul,
  maximum,
  mul,
  permute,
  reshape,
  sqrt,
  stopGradient,
  sub,
  sum,
  type Tensor,
  where,
} from "../graph/mod.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../io/peft.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import type { DecoderConfig } from "./config.ts";
import type { LinearHook } from "./decoder.ts";
import { allLinearTargets, linearModules, PEFT_PREFIX, resolveTargets } from "./lora.ts";
import type { ModelAdapter, ModelCore } from "./model_core.ts";

/** PEFT's OFTConfig fields that shape the computation. */
export interface OftConfig {
  /** Blocks per layer (0: from oft_block_size). */
  r: number;
  /** Features per block (0: from r). */
  blockSize: number;
  targets: readonly string[] | string;
  moduleDropout: number;
  blockShare: boolean;
  numCayleyNeumannTerms: number;
  /** Constrained OFT (PEFT's `coft`, default false) and its `eps` (default 6e-5). */
  coft?: boolean;
  eps?: number;
}

/** PEFT's default `eps` of constrained OFT. */
export const COFT_EPS = 6e-5;

/** ε' of `_project_batch` for a weight of `rows` rows: eps / √rows in float32, as torch computes it. */
export function coftRadius(eps: number, rows: number): number {
  return Math.fround(Math.fround(eps) / Math.fround(Math.sqrt(rows)));
}

/** `_project_batch` of weights `w` [rows, n] as graph ops: rows whose skew matrix is larger than ε' rescaled to ε'. */
export function coftProject(w: Tensor, eps: number): Tensor {
  const r = coftRadius(eps, w.shape[0]);
  const norm = sqrt(mul(sum(mul(w, w), -1, true), 2));
  return where(ge(r, norm), w, mul(div(w, maximum(norm, 1e-30)), r));
}

/** `_project_batch` on the host (float32 arithmetic), for merging: rows of `w` [rows, n] projected in place. */
export function coftProjectHost(w: Float32Array, rows: number, eps: number): Float32Array {
  const f = Math.fround, n = w.length / rows, r = coftRadius(eps, rows);
  for (let i = 0; i < rows; i++) {
    let ss = 0;
    for (let j = 0; j < n; j++) ss = f(ss + f(w[i * n + j] * w[i * n + j]));
    const norm = f(Math.sqrt(f(2 * ss)));
    if (norm <= r) continue;
    for (let j = 0; j < n; j++) w[i * n + j] = f(r * f(w[i * n + j] / norm));
  }
  return w;
}

/** PEFT's OFTConfig.__post_init__ check of r and oft_block_size. */
export function checkOftConfig(c: Pick<OftConfig, "r" | "blockSize">): void {
  if (c.r === 0 && c.blockSize === 0) {
    throw new Error(
      `oft_rank: Either \`r\` or \`oft_block_size\` must be non-zero. Currently, r = ${c.r} and oft_block_size = 0.`,
    );
  }
  if ((c.r !== 0) === (c.blockSize !== 0)) {
    throw new Error(
      `oft_rank: You can only specify either r (${c.r}) or oft_block_size (${c.blockSize}), but not both ` +
        "simultaneously, because r x oft_block_size == in_features.",
    );
  }
}

/** LF's OFT arguments. */
export interface OftArgs {
  oft_rank: number;
  oft_block_size: number;
  oft_target: string | string[];
  module_dropout: number;
  additional_target?: string | string[] | null;
}

/** The OFT config LF builds from its arguments. */
export function oftConfigFromArgs(a: OftArgs): OftConfig {
  const extra = Array.isArray(a.additional_target)
    ? a.additional_target
    : a.additional_target
    ? [a.additional_target]
    : [];
  if (extra.length) throw new Error("additional_target: modules_to_save is not supported with OFT in Whetstone yet");
  const t = typeof a.oft_target === "string" ? a.oft_target.split(",").map((s) => s.trim()) : a.oft_target;
  const cfg = {
    r: a.oft_rank,
    blockSize: a.oft_block_size,
    targets: t.includes("all") ? "all" : t,
    moduleDropout: a.module_dropout,
    blockShare: false,
    numCayleyNeumannTerms: 5,
  };
  checkOftConfig(cfg);
  return cfg;
}

/** PEFT's `adjust_oft_parameters`: the divisor of `n` nearest to `p` (the lower one on ties). */
function adjust(n: number, p: number): number {
  if (p >= n) return n;
  let hi = p;
  while (hi <= n && n % hi !== 0) hi++;
  let lo = p;
  while (lo > 1 && n % lo !== 0) lo--;
  return p - lo <= hi - p ? lo : hi;
}

/** A module's blocks and block size from in_features, as PEFT's `update_layer` resolves (and adjusts) them. */
export function oftBlocks(inFeatures: number, c: Pick<OftConfig, "r" | "blockSize">): { r: number; b: number } {
  if (c.r === 0) {
    const b = inFeatures % c.blockSize !== 0 || c.blockSize > inFeatures
      ? adjust(inFeatures, c.blockSize)
      : c.blockSize;
    return { r: inFeatures / b, b };
  }
  const r = inFeatures % c.r !== 0 || c.r > inFeatures ? adjust(inFeatures, c.r) : c.r;
  return { r, b: inFeatures / r };
}

/** The PEFT key of a module's rotation weights. */
export const oftKey = (module: string): string => `${PEFT_PREFIX}${module}.oft_R.weight`;

/** [n, b·b]: vec · S is the flattened skew-symmetric M − Mᵀ with M[rows, cols] = vec (torch.triu_indices order). */
function skewMap(b: number): Float32Array {
  const n = (b * (b - 1)) / 2, s = new Float32Array(n * b * b);
  let e = 0;
  for (let i = 0; i < b; i++) {
    for (let j = i + 1; j < b; j++, e++) {
      s[e * b * b + i * b + j] = 1;
      s[e * b * b + j * b + i] = -1;
    }
  }
  return s;
}

/** The skew maps of a graph, one constant per block size that every adapted module shares. */
const SKEW_MAPS = new WeakMap<Graph, Map<number, Tensor>>();

/**
 * The [n, b·b] skew map of `b` in graph `g`, made once per graph: each module its own copy would cost a traced step
 * b²·n·8 bytes per module (4 MB at b = 32) and the symbolic probes (exec/onnx/symbolic.ts) as many again per probe.
 */
function skewConstant(g: Graph, b: number): Tensor {
  let maps = SKEW_MAPS.get(g);
  if (!maps) SKEW_MAPS.set(g, maps = new Map());
  let t = maps.get(b);
  if (!t) maps.set(b, t = g.constant(skewMap(b), [(b * (b - 1)) / 2, b * b]));
  return t;
}

/** R [r, b, b] from the weights [r, n]: PEFT's `_cayley_batch` with the Neumann series of `terms` terms. */
export function cayleyNeumann(w: Tensor, b: number, terms: number): Tensor {
  const g = w.graph, r = w.shape[0];
  const Q = reshape(matmul(w, skewConstant(g, b)), [r, b, b]);
  const eye = new Float32Array(b * b);
  for (let i = 0; i < b; i++) eye[i * b + i] = 1;
  let R: Tensor = g.constant(eye, [1, b, b]);
  const plus = (x: Tensor, y: Tensor) => add(x, y); // the identity's leading 1 broadcasts over the r blocks
  if (terms > 1) {
    R = plus(R, mul(Q, 2));
    if (terms > 2) {
      const Q2 = matmul(Q, Q);
      R = plus(R, mul(Q2, 2));
      let P = Q2;
      for (let k = 3; k < terms - 1; k++) {
        P = matmul(P, Q);
        R = plus(R, mul(P, 2));
      }
      P = matmul(P, Q);
      R = plus(R, P);
    }
  }
  return R;
}

/** The LinearHook rotating each targeted linear's input (see the module doc). */
export function oftHook(cfg: OftConfig, decoder: DecoderConfig, weight: (name: string) => Tensor): LinearHook {
  const shapes = linearModules(decoder);
  const targets = new Set(resolveTargets(decoder, { targets: cfg.targets }));
  return (x, name, base) => {
    if (!targets.has(name)) return base(x);
    const inF = shapes.get(name)![1];
    const { r, b } = oftBlocks(inF, cfg);
    let W = weight(oftKey(name));
    if (cfg.coft) W = add(W, stopGradient(sub(coftProject(W, cfg.eps ?? COFT_EPS), W)));
    const R = cayleyNeumann(W, b, cfg.numCayleyNeumannTerms); // [r or 1, b, b]
    const lead = x.shape.slice(0, -1), N = lead.reduce((p, q) => p * q, 1);
    const xf = x.dtype === "f32" ? x : cast(x, "f32");
    const blocks = permute(reshape(xf, [N, r, b]), [1, 0, 2]); // [r, N, b]
    const rotated = reshape(permute(matmul(blocks, R), [1, 0, 2]), [...lead, inF]);
    return base(x.dtype === "f32" ? rotated : cast(rotated, x.dtype));
  };
}

/** An OFT adapter attached to a model: `oft_R.weight` [r, b(b−1)/2] per targeted module (f32, in the executor). */
export class OftAdapter implements ModelAdapter {
  readonly params: Map<string, { shape: number[]; dtype: "f32" }>;
  /** Modules it adapts, in decoder order. */
  readonly targets: string[];
  constructor(readonly config: OftConfig, readonly decoder: DecoderConfig, readonly baseModel: string) {
    checkOftConfig(config);
    this.targets = resolveTargets(decoder, { targets: config.targets });
    const shapes = linearModules(decoder);
    this.params = new Map(this.targets.map((m) => {
      const { r, b } = oftBlocks(shapes.get(m)![1], config);
      return [oftKey(m), { shape: [config.blockShare ? 1 : r, (b * (b - 1)) / 2], dtype: "f32" as const }];
    }));
  }

  linear(weight: (name: string) => Tensor): LinearHook {
    return oftHook(this.config, this.decoder, weight);
  }

  #project?: Promise<CompiledGraph>;

  /**
   * Before a training step, constrained OFT projects the stored weights in place (PEFT's forward does, so its
   * optimizer steps from the projected values); queued on the executor like the step itself. Nothing without coft.
   */
  beforeStep(model: ModelCore): Promise<unknown> | undefined {
    if (!this.config.coft) return undefined;
    if (!this.#project) {
      const g = new Graph();
      for (const [k, p] of this.params) {
        const w = g.param(model.prefix + k, p.shape);
        assign(w, coftProject(w, this.config.eps ?? COFT_EPS));
      }
      this.#project = model.executor.compile(g);
    }
    return this.#project.then((c) => c.run({}, []));
  }
}

/** Attaches an OFT adapter: a PEFT folder (path), or a config for a new one (zero weights: the identity). */
export async function attachOft(
  model: ModelCore,
  source: string | OftConfig,
  baseModel = "",
): Promise<OftAdapter> {
  if (model.adapter) throw new Error("attachOft: the model already has an adapter");
  let cfg: OftConfig, tensors: Map<string, Float32Array> | undefined;
  if (typeof source === "string") {
    const raw = JSON.parse(await Deno.readTextFile(`${source}/${ADAPTER_CONFIG_FILE}`));
    if (raw.peft_type !== "OFT") throw new Error(`${source}: peft_type ${raw.peft_type}, expected OFT`);
    if (raw.use_cayley_neumann === false) throw new Error(`${source}: use_cayley_neumann false is not supported`);
    cfg = {
      r: raw.r ?? 0,
      blockSize: raw.oft_block_size ?? 0,
      targets: raw.target_modules,
      moduleDropout: raw.module_dropout ?? 0,
      blockShare: !!raw.block_share,
      numCayleyNeumannTerms: raw.num_cayley_neumann_terms ?? 5,
      coft: !!raw.coft,
      eps: raw.eps ?? COFT_EPS,
    };
    baseModel ||= raw.base_model_name_or_path ?? "";
    const f = await openSafetensors(`${source}/${ADAPTER_WEIGHTS_FILE}`);
    tensors = new Map();
    for (const name of f.tensors.keys()) tensors.set(name, await f.readF32(name));
    f.close();
  } else cfg = source;
  const adapter = new OftAdapter(cfg, model.config, baseModel);
  for (const [k, p] of adapter.params) {
    const t = tensors?.get(k);
    if (tensors && (!t || t.length !== p.shape[0] * p.shape[1])) {
      throw new Error(`${source}: adapter has no tensor "${k}" of shape [${p.shape.join(", ")}]`);
    }
    model.executor.setParam(model.prefix + k, t ?? new Float32Array(p.shape[0] * p.shape[1]), p.shape, "f32");
  }
  model.setAdapter(adapter);
  return adapter;
}

/** PEFT 0.21's adapter_config.json of an OFT adapter. */
export function oftConfigJson(ad: OftAdapter): Record<string, unknown> {
  const c = ad.config;
  return {
    auto_mapping: null,
    base_model_name_or_path: ad.baseModel,
    bias: "none",
    block_share: c.blockShare,
    coft: !!c.coft,
    eps: c.eps ?? COFT_EPS,
    exclude_modules: null,
    fan_in_fan_out: false,
    inference_mode: true,
    init_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    module_dropout: c.moduleDropout,
    modules_to_save: null,
    num_cayley_neumann_terms: c.numCayleyNeumannTerms,
    oft_block_size: c.blockSize,
    peft_type: "OFT",
    r: c.r,
    revision: null,
    target_modules: typeof c.targets === "string" && c.targets === "all" ? allLinearTargets(ad.decoder) : c.targets,
    task_type: "CAUSAL_LM",
    use_cayley_neumann: true,
  };
}

/** Writes the model's OFT adapter as PEFT writes it. */
export async function saveOft(model: ModelCore, dir: string, baseModel?: string): Promise<void> {
  const ad = model.adapter;
  if (!(ad instanceof OftAdapter)) throw new Error("saveOft: the model has no OFT adapter attached");
  await Deno.mkdir(dir, { recursive: true });
  const rec: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [k, p] of ad.params) {
    rec[k] = { dtype: "F32", shape: p.shape, data: Float32Array.from(await model.executor.getParam(model.prefix + k)) };
  }
  await writeSafetensors(`${dir}/${ADAPTER_WEIGHTS_FILE}`, rec, { format: "pt" });
  const json = { ...oftConfigJson(ad), ...(baseModel !== undefined ? { base_model_name_or_path: baseModel } : {}) };
  await writeFileAtomic(`${dir}/${ADAPTER_CONFIG_FILE}`, JSON.stringify(json, null, 2) + "\n");
}
