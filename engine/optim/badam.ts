/**
 * BAdam (Luo et al. 2024) in layer mode, as LLaMA-Factory runs it: `BlockOptimizer` from Ledzy/BAdam
 * (src/badam/block_optim.py) around torch AdamW, with `block_prefix_list=None` (blocks inferred from the
 * names), `include_embedding` and `include_lm_head` off, `switch_block_every = badam_switch_interval`,
 * `start_block = badam_start_block`, `switch_mode = badam_switch_mode`. Pure functions: which params form
 * each block, which block trains at each optimizer step, and what a switch changes.
 *
 * BlockOptimizer's schedule, step n counted from 1: the first block is `start_block` (else 0 ascending, the
 * last descending, the first of a random permutation); after step n the next block takes over when
 * (n + 1) % interval == 0, so the first block trains interval − 1 steps and every later one interval steps.
 * At a switch only the new block trains, the base optimizer's state is dropped (`state = defaultdict(dict)`):
 * the new block starts from zero moments and AdamW's step count (bias correction) starts again at 1.
 *
 * Quirks kept or noted: BlockOptimizer rebuilds its param groups as `{"weight_decay": …, **defaults}`, so torch
 * AdamW's default weight_decay (0.01) wins over LF's, for every active param, norms and biases included
 * ({@link BADAM_WEIGHT_DECAY}). "random" draws permutations with a seeded mulberry32, not torch.randperm, so the
 * order differs from torch's for the same seed. Where BAdam itself fails (fixed without a start block; random
 * with a start block) this module throws, or continues with fresh permutations after the start block.
 * @module
 */
import { mulberry32 } from "../util/rng.ts";

/** badam_switch_mode values. */
export const BADAM_SWITCH_MODES = ["ascending", "descending", "random", "fixed"] as const;
/** One of {@link BADAM_SWITCH_MODES}. */
export type BadamSwitchMode = typeof BADAM_SWITCH_MODES[number];

/** The weight decay BAdam's AdamW applies to every active param under LLaMA-Factory (torch AdamW's default). */
export const BADAM_WEIGHT_DECAY = 0.01;

/** BAdam's layer-mode settings (LLaMA-Factory's badam_* keys). */
export interface BadamOptions {
  /** badam_switch_mode (LF default "ascending"). */
  switchMode: BadamSwitchMode;
  /** badam_switch_interval (LF default 50). */
  switchInterval: number;
  /** badam_start_block (LF default None). */
  startBlock?: number | null;
  /** Seed of the "random" order (LF's `seed`). */
  seed?: number;
}

/** LLaMA-Factory's defaults. */
export const BADAM_DEFAULTS: BadamOptions = { switchMode: "ascending", switchInterval: 50, startBlock: null };

/** One block: the prefixes BlockOptimizer matches (`any(p in name)`) and the param names they select. */
export interface BadamBlock {
  prefixes: string[];
  params: string[];
}

/** All non-overlapping matches of `re` in `s`, as Python's re.findall without groups. */
function findall(re: RegExp, s: string): string[] {
  return [...s.matchAll(new RegExp(re.source, "g"))].map((m) => m[0]);
}

/**
 * BlockOptimizer.infer_param_groups over `names` (in the model's named_parameters order), then the params of
 * each block. Layer mode under LF: one block per decoder layer (`model.layers.<i>.`); embeddings, the final norm
 * and lm_head belong to no block and never train (unless `includeEmbedding` / `includeLmHead`).
 */
export function badamBlocks(
  names: readonly string[],
  opts: { includeEmbedding?: boolean; includeLmHead?: boolean } = {},
): BadamBlock[] {
  const embed = /.*embed[^.]*\./, layer = /.*layers.[^.]*\./;
  const prefixes: string[][] = [];
  const others: string[] = [];
  for (const name of names) {
    if (prefixes.some((p) => name.includes(p[0]))) continue;
    const l = findall(layer, name);
    if (l.length) prefixes.push(l);
    else if (opts.includeEmbedding && findall(embed, name).length) prefixes.push(findall(embed, name));
    else others.push(name);
  }
  if (opts.includeLmHead) prefixes.push(others);
  if (!prefixes.length) {
    throw new Error(`BAdam found no blocks: no parameter name matches "layers.<i>." (${names[0]}, …)`);
  }
  return prefixes.map((p) => ({ prefixes: p, params: names.filter((n) => p.some((x) => n.includes(x))) }));
}

/** Fisher–Yates permutation of 0..n−1 from a generator. */
function permutation(n: number, rnd: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Which block trains at each optimizer step (see the module doc). */
export class BadamSchedule {
  readonly #order: number[] = [];
  readonly #pool: number[] = [];
  readonly #rnd: () => number;

  constructor(readonly blockCount: number, readonly opts: BadamOptions) {
    if (!Number.isInteger(blockCount) || blockCount < 1) {
      throw new Error(`BAdam needs at least one block, got ${blockCount}`);
    }
    if (!BADAM_SWITCH_MODES.includes(opts.switchMode)) {
      throw new Error(`badam_switch_mode must be one of ${BADAM_SWITCH_MODES.join(", ")}, got "${opts.switchMode}"`);
    }
    if (!Number.isInteger(opts.switchInterval) || opts.switchInterval < 1) {
      throw new Error(`badam_switch_interval must be a positive integer, got ${opts.switchInterval}`);
    }
    const s = opts.startBlock;
    if (s !== undefined && s !== null && !(Number.isInteger(s) && s >= 0 && s < blockCount)) {
      throw new Error(`badam_start_block must be an integer in [0, ${blockCount}), got ${s}`);
    }
    if (opts.switchMode === "fixed" && (s === undefined || s === null)) {
      throw new Error("badam_switch_mode fixed needs badam_start_block (BAdam has no default block for it)");
    }
    this.#rnd = mulberry32(opts.seed ?? 0);
    const first = s ??
      (opts.switchMode === "descending" ? blockCount - 1 : opts.switchMode === "random" ? this.#pop() : 0);
    this.#order.push(first);
  }

  /** The next block of "random": popped from the end of a permutation, refilled when empty. */
  #pop(): number {
    if (!this.#pool.length) this.#pool.push(...permutation(this.blockCount, this.#rnd));
    return this.#pool.pop()!;
  }

  #next(b: number): number {
    const n = this.blockCount;
    switch (this.opts.switchMode) {
      case "ascending":
        return (b + 1) % n;
      case "descending":
        return (b - 1 + n) % n;
      case "random":
        return this.#pop();
      default:
        return b;
    }
  }

  #checkStep(step: number): void {
    if (!Number.isInteger(step) || step < 1) throw new Error(`BAdam steps count from 1, got ${step}`);
  }

  /** Switches that happened before optimizer step `step` (1-based). */
  switchesBefore(step: number): number {
    this.#checkStep(step);
    const k = this.opts.switchInterval;
    return Math.floor(step / k) - Math.floor(1 / k);
  }

  /** Whether the block changes right after optimizer step `step` (BlockOptimizer: (step + 1) % interval == 0). */
  switchesAfter(step: number): boolean {
    this.#checkStep(step);
    return (step + 1) % this.opts.switchInterval === 0;
  }

  /** The block that trains at optimizer step `step`. */
  blockAt(step: number): number {
    const s = this.switchesBefore(step);
    while (this.#order.length <= s) this.#order.push(this.#next(this.#order[this.#order.length - 1]));
    return this.#order[s];
  }

  /** AdamW's step count at optimizer step `step`: steps since its block became active, from 1. */
  stepInBlock(step: number): number {
    if (this.switchesBefore(step) === 0) return step;
    const k = this.opts.switchInterval;
    return step - k * Math.floor(step / k) + 1;
  }
}

/** What a switch changes: the params that stop and start training, and the optimizer states to reset. */
export interface BadamSwitch {
  /** Params of the old block: they freeze, and their optimizer states are dropped. */
  freeze: string[];
  /** Params of the new block: they train, from zero moments, with AdamW's step count back at 1. */
  train: string[];
}

/** The change between blocks `from` and `to` (equal blocks, as in "fixed" mode, still reset the states). */
export function badamSwitch(blocks: readonly BadamBlock[], from: number | undefined, to: number): BadamSwitch {
  const train = [...blocks[to].params];
  const freeze = from === undefined ? [] : blocks[from].params.filter((p) => !train.includes(p));
  return { freeze, train };
}
