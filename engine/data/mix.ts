/**
 * Merging, splitting and sampling of datasets, after LLaMA-Factory's `data/data_utils.py` (`merge_dataset`,
 * `split_dataset`) and `loader.py` (`num_samples`), with a seeded generator of our own (so the same seed gives the
 * same result here every time, but not the same rows as numpy would pick).
 *
 * Interleaving follows HF datasets' `interleave_datasets` (map-style) rules exactly, with our random stream:
 * - no probabilities: round robin, one example of each dataset per round, in the given order;
 *   `interleave_under` ("first_exhausted") stops after the round in which the shortest dataset ran out, i.e. after
 *   `min(lengths)` rounds; `interleave_over` ("all_exhausted") restarts datasets that ran out and stops after the round
 *   in which the last one ran out (`max(lengths)` rounds); `interleave_once` ("all_exhausted_without_replacement")
 *   skips datasets that ran out and stops when all did (every example exactly once).
 * - with probabilities: before each pick, stop if any (under) or all (over) datasets have run out; else pick a dataset
 *   with the given probabilities and take its next example; a dataset that ran out restarts from its beginning.
 *   `interleave_once` picks among the datasets not yet run out, probabilities renormalised.
 * Streaming inputs get the same sequence as arrays (each source is read one example ahead to know when it runs out,
 * and restarted by reading it again); HF's iterable version differs slightly at the stopping point.
 * @module
 */
import { Rng } from "../util/rng.ts";

/** How several datasets become one. */
export type MixStrategy = "concat" | "interleave_under" | "interleave_over" | "interleave_once";

/** Every mix strategy. */
export const MIX_STRATEGIES: readonly MixStrategy[] = [
  "concat",
  "interleave_under",
  "interleave_over",
  "interleave_once",
];

/**
 * `num_samples` of dataset_info.json: exactly `n` items, a seeded permutation first (every item once when n >= len),
 * then items drawn with replacement for the rest, as LF does.
 */
export function sampleExactly<T>(items: readonly T[], n: number, rng: Rng): T[] {
  if (items.length === 0) return [];
  const idx = rng.permutation(items.length).slice(0, n);
  while (idx.length < n) idx.push(rng.int(items.length));
  return idx.map((i) => items[i]);
}

/**
 * The number of evaluation examples for `val_size` over `n` examples (LF: an integer count when > 1, else a fraction,
 * rounded up as HF's `train_test_split` does). Throws when it leaves no training or no evaluation example.
 */
export function valCount(valSize: number, n: number): number {
  if (!Number.isFinite(valSize) || valSize < 0) throw new RangeError(`val_size should be >= 0, got ${valSize}`);
  if (valSize === 0) return 0;
  const count = valSize >= 1 ? Math.trunc(valSize) : Math.ceil(valSize * n);
  if (count >= n) {
    throw new RangeError(
      `val_size ${valSize} takes ${count} of ${n} examples for evaluation, leaving none to train on`,
    );
  }
  return count;
}

/**
 * Splits off `val_size` examples for evaluation, chosen by a seeded permutation; both parts keep the input order.
 */
export function splitTrainEval<T>(items: readonly T[], valSize: number, seed: number): { train: T[]; eval: T[] } {
  const count = valCount(valSize, items.length);
  const isEval = new Uint8Array(items.length);
  for (const i of new Rng(seed).permutation(items.length).slice(0, count)) isEval[i] = 1;
  const train: T[] = [], evalSet: T[] = [];
  items.forEach((x, i) => (isEval[i] ? evalSet : train).push(x));
  return { train, eval: evalSet };
}

/** Checks `interleave_probs` (a comma list or numbers) against the number of datasets; returns them normalised. */
export function parseProbs(
  probs: string | readonly number[] | undefined,
  n: number,
  warnings: string[] = [],
): number[] | undefined {
  if (probs === undefined || probs === null || (typeof probs === "string" && probs.trim() === "")) return undefined;
  const list = typeof probs === "string" ? probs.split(",").map((s) => Number(s.trim())) : [...probs];
  if (list.length !== n) {
    throw new RangeError(`interleave_probs has ${list.length} values but there are ${n} datasets`);
  }
  if (list.some((p) => !Number.isFinite(p) || p < 0)) {
    throw new RangeError(`interleave_probs should be non-negative numbers, got ${JSON.stringify(probs)}`);
  }
  const sum = list.reduce((a, b) => a + b, 0);
  if (!(sum > 0)) throw new RangeError(`interleave_probs should not all be zero`);
  if (Math.abs(sum - 1) > 1e-6) warnings.push(`interleave_probs sum to ${sum}, not 1: normalised`);
  return list.map((p) => p / sum);
}

/** A dataset that can be read again from its start (streaming sources are re-read when they restart). */
export type Source<T> = () => AsyncIterable<T> | Iterable<T>;

class Cursor<T> {
  #it: AsyncIterator<T> | Iterator<T> | undefined;
  #ahead: IteratorResult<T> | undefined;
  /** Ran out at least once. */
  exhausted = false;
  /** Has no example at all. */
  empty = false;
  constructor(readonly source: Source<T>, readonly restart: boolean) {}

  async #pull(): Promise<IteratorResult<T>> {
    if (!this.#it) {
      const s = this.source();
      this.#it = Symbol.asyncIterator in s
        ? (s as AsyncIterable<T>)[Symbol.asyncIterator]()
        : (s as Iterable<T>)[Symbol.iterator]();
    }
    return await this.#it.next();
  }

  /** Reads the first example ahead; marks the source empty when it has none. */
  async start(): Promise<void> {
    this.#ahead = await this.#pull();
    if (this.#ahead.done) this.empty = this.exhausted = true;
  }

  /** Takes the next example; afterwards `exhausted` says whether that was the last one (then it may restart). */
  async take(): Promise<T> {
    if (!this.#ahead || this.#ahead.done) throw new Error("Cursor.take on an empty source");
    const value = this.#ahead.value;
    this.#ahead = await this.#pull();
    if (this.#ahead.done) {
      this.exhausted = true;
      this.#it = undefined;
      if (this.restart) this.#ahead = await this.#pull();
    }
    return value;
  }

  async close(): Promise<void> {
    await this.#it?.return?.();
  }
}

/**
 * Interleaves datasets with the given strategy (see the module doc), lazily. `probs` (normalised) picks datasets at
 * random with the seeded generator; without it the datasets take turns.
 */
export async function* interleave<T>(
  sources: readonly Source<T>[],
  strategy: Exclude<MixStrategy, "concat">,
  seed: number,
  probs?: readonly number[],
): AsyncGenerator<T> {
  const cursors = sources.map((s) => new Cursor(s, strategy === "interleave_over"));
  try {
    for (const c of cursors) await c.start();
    const rng = new Rng(seed);
    const live = cursors.filter((c) => !c.empty);
    if (strategy === "interleave_under" && live.length < cursors.length) return;
    if (!probs) {
      for (;;) {
        let took = false;
        for (const c of live) {
          if (strategy === "interleave_once" && c.exhausted) continue;
          yield await c.take();
          took = true;
        }
        if (!took) return;
        if (strategy === "interleave_under" && live.some((c) => c.exhausted)) return;
        if (strategy === "interleave_over" && live.every((c) => c.exhausted)) return;
      }
    }
    // A dataset with probability 0 is never drawn: for "over" it counts as done from the start.
    const weights = cursors.map((c, i) => (c.empty ? 0 : probs[i]));
    const done = (c: Cursor<T>, i: number) => c.exhausted || weights[i] === 0;
    for (;;) {
      if (strategy === "interleave_under" && cursors.some((c) => c.exhausted)) return;
      if (strategy !== "interleave_under" && cursors.every(done)) return;
      const w = strategy === "interleave_once" ? weights.map((p, i) => (cursors[i].exhausted ? 0 : p)) : weights;
      yield await cursors[rng.choice(w)].take();
    }
  } finally {
    for (const c of cursors) await c.close();
  }
}

/** Concatenates datasets in order, lazily. */
export async function* concat<T>(sources: readonly Source<T>[]): AsyncGenerator<T> {
  for (const s of sources) {
    const it = s();
    if (Symbol.asyncIterator in it) yield* it as AsyncIterable<T>;
    else yield* it as Iterable<T>;
  }
}

/** Mixes datasets lazily with a strategy (one dataset is returned as it is). */
export function mix<T>(
  sources: readonly Source<T>[],
  strategy: MixStrategy,
  seed: number,
  probs?: readonly number[],
): AsyncGenerator<T> {
  if (strategy === "concat" || sources.length <= 1) return concat(sources);
  if (!MIX_STRATEGIES.includes(strategy)) {
    throw new RangeError(`mix_strategy should be one of ${MIX_STRATEGIES.join(", ")}, got ${JSON.stringify(strategy)}`);
  }
  return interleave(sources, strategy, seed, probs);
}

/** Mixes in-memory datasets (see {@linkcode mix}). */
export async function mixArrays<T>(
  sets: readonly (readonly T[])[],
  strategy: MixStrategy,
  seed: number,
  probs?: readonly number[],
): Promise<T[]> {
  if (strategy === "concat" || sets.length <= 1) return sets.flat() as T[];
  const out: T[] = [];
  for await (const x of mix(sets.map((s) => () => s), strategy, seed, probs)) out.push(x);
  return out;
}
