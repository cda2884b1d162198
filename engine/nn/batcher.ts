/**
 * Continuous batching over one model: requests submitted while others generate join the running batch at the
 * next decode step, each with its own prompt length, position, KV cache row, sampling options, stop ids and
 * token budget, and leave it as soon as they stop (or their consumer goes away), freeing the row for the next.
 *
 * How requests join: the prompts waiting when a step ends are prefilled together (the prefill graph of their row
 * bucket, as `generateBatch` prefills, into a staging cache of the batch's cache length C), each row's first token
 * chosen from its prefill logits; then one copy graph (gather rows, write them with `scatterRows`) moves the
 * staged rows into free rows of the batch's cache. Then one decode step per token runs for all B rows at
 * once (the decode graph of {@link generate}: per-row ids, positions and masks). A batch grows its row bucket
 * (1, 2, 4, ...) or its cache length when a request needs more, by copying the cache into the larger one. Rows
 * not in use decode a dummy token at position 0, unread.
 *
 * Each row's tokens are those {@link generate} gives for its prompt and options alone (greedy rows token for
 * token, as `generateBatch`'s rows are; sampled rows draw from their own RNG seeded `seed`). So "dynamic" and
 * "longrope" RoPE frequencies follow each row's own length (rope_feed.ts), and a Phi-3 longrope row whose sequence
 * passes original_max_position_embeddings leaves the batch and joins again with its whole sequence as the prompt
 * (what `generate` does there: {@link longropeReprefill}).
 *
 * Up to `maxBatch` rows generate at once; up to `maxQueue` more requests wait (FIFO); beyond that
 * {@link BatcherFullError}. The batcher's caches are its own (`<prefix>cb.kv*`), so it may run beside
 * `generate` calls on the same model.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel("fixtures/models/llama");
 * const batcher = new Batcher(model, { maxBatch: 8, maxQueue: 64 });
 * const [a, b] = await Promise.all([[1, 5, 9], [1, 7]].map(async (p) => {
 *   const out: number[] = [];
 *   for await (const t of batcher.stream(p, { maxNewTokens: 8, stop: [2] })) out.push(t);
 *   return out;
 * }));
 * ```
 * @module
 */
import { concat, embedding, Graph, reshape, scatterRows } from "../graph/mod.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import { bucketLength, type ModelCore } from "./model_core.ts";
import {
  checkInputs,
  chooseToken,
  compiled,
  type GenerateOptions,
  longropeReprefill,
  seededRandom,
} from "./generate.ts";
import { batchBucket, cacheBucket, cacheName, cacheShape, decodeMask, layerWindows } from "./kv_decoder.ts";
import { TokenChannel } from "./token_channel.ts";

/** Thrown by {@link Batcher.stream} when `maxBatch` rows run and `maxQueue` requests already wait. */
export class BatcherFullError extends Error {
  constructor(readonly maxBatch: number, readonly maxQueue: number) {
    super(`the server is busy: ${maxBatch} request(s) are generating and ${maxQueue} wait; try again shortly`);
  }
}

/** Limits of a {@link Batcher}. */
export interface BatcherLimits {
  /** Rows generating at once (default 8). */
  maxBatch: number;
  /** Requests waiting beyond those (default 64); more are refused with {@link BatcherFullError}. */
  maxQueue: number;
}

/** What a batcher has done (for tests and status). */
export interface BatcherStats {
  /** Rows generating now. */
  running: number;
  /** Requests waiting now. */
  waiting: number;
  /** Most rows that generated in one decode step so far. */
  maxRows: number;
  /** Decode steps run (one per token of the whole batch). */
  steps: number;
  /** Requests admitted into a batch. */
  admitted: number;
}

const NS = "cb.";
/** Where joining rows are staged before they are copied into the batch. */
const STAGE = "cb.stage.";

interface Row {
  prompt: number[];
  opts: GenerateOptions;
  out: TokenChannel;
  seen: number[];
  count: number;
  stop: Set<number>;
  random: () => number;
  /** Slot in the batch; -1 while waiting. */
  slot: number;
  /** Position of the next token fed. */
  pos: number;
  last: number;
  done: boolean;
  /** Admitted before (a Phi-3 longrope row joining again with its whole sequence). */
  resumed?: boolean;
}

const COPIES = new WeakMap<ModelCore, Map<string, Promise<CompiledGraph>>>();

/**
 * The graph copying cache rows into the batch cache (dst B2 × C2) from the concatenation of `srcs` (all with
 * C1 ≤ C2 slots): input `rows` [B2·Hkv] i32 names, for each dst row, its source row; slots [0, C1) are written.
 */
function copyGraph(
  model: ModelCore,
  srcs: { B: number; C: number; ns?: string }[],
  dst: { B: number; C: number; ns?: string },
): Promise<CompiledGraph> {
  let m = COPIES.get(model);
  if (!m) COPIES.set(model, m = new Map());
  const name = (s: { B: number; C: number; ns?: string }) => `${s.ns ?? NS}${s.B}x${s.C}`;
  const key = `${srcs.map(name).join("+")}>${name(dst)}`;
  let p = m.get(key);
  if (!p) {
    const c = model.config, C1 = srcs[0].C, D = c.headDim, N2 = dst.B * c.kvHeads;
    const g = new Graph();
    const rows = g.input("rows", [N2], "i32");
    const index = g.constant(Array.from({ length: N2 * C1 }, (_, i) => i % C1), [N2, C1], "i32");
    for (let layer = 0; layer < c.layers; layer++) {
      for (const kind of ["k", "v"] as const) {
        const param = (s: { B: number; C: number; ns?: string }) =>
          g.param(model.prefix + (s.ns ?? NS) + cacheName(s.B, s.C, layer, kind), cacheShape(c, s.B, s.C), "f32");
        const parts = srcs.map(param);
        const all = parts.length === 1 ? parts[0] : concat(parts, 0);
        const flat = reshape(all, [srcs.reduce((n, s) => n + s.B * c.kvHeads, 0), C1 * D]);
        scatterRows(param(dst), index, reshape(embedding(flat, rows), [N2, C1, D]));
      }
    }
    p = model.executor.compile(g);
    p.catch(() => m.delete(key));
    m.set(key, p);
  }
  return p;
}

/** Makes sure the batcher's caches for B rows of C slots exist on the executor. */
function ensureCache(model: ModelCore, B: number, C: number, ns = NS): void {
  const c = model.config, shape = cacheShape(c, B, C);
  for (let i = 0; i < c.layers; i++) {
    for (const kind of ["k", "v"] as const) {
      const name = model.prefix + ns + cacheName(B, C, i, kind);
      if (!model.executor.hasParam(name)) {
        model.executor.setParam(name, new Float32Array(shape[0] * C * c.headDim), shape);
      }
    }
  }
}

const f32 = (x: ArrayLike<number>) => (x instanceof Float32Array ? x : Float32Array.from(x));

/** Continuous batching of generation requests on one model (see the module doc). */
export class Batcher {
  readonly limits: BatcherLimits;
  readonly #model: ModelCore;
  readonly #waiting: Row[] = [];
  /** The batch: one entry per slot (undefined = free). */
  #slots: (Row | undefined)[] = [];
  #C = 0;
  #loop: Promise<void> | undefined;
  readonly #stats = { maxRows: 0, steps: 0, admitted: 0 };

  constructor(model: ModelCore, limits: Partial<BatcherLimits> = {}) {
    this.#model = model;
    this.limits = { maxBatch: 8, maxQueue: 64 };
    this.setLimits(limits);
  }

  /** Changes the limits (checked: integers, maxBatch >= 1, maxQueue >= 0); rows already running keep running. */
  setLimits(limits: Partial<BatcherLimits>): void {
    const { maxBatch = this.limits.maxBatch, maxQueue = this.limits.maxQueue } = limits;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) {
      throw new RangeError(`maxBatch must be an integer >= 1, got ${maxBatch}`);
    }
    if (!Number.isInteger(maxQueue) || maxQueue < 0) {
      throw new RangeError(`maxQueue must be an integer >= 0, got ${maxQueue}`);
    }
    this.limits.maxBatch = maxBatch;
    this.limits.maxQueue = maxQueue;
  }

  /** What the batcher is doing and has done. */
  get stats(): BatcherStats {
    return { running: this.#running().length, waiting: this.#waiting.length, ...this.#stats };
  }

  /** True when `n` more requests can start or wait now (rows free plus queue places left). */
  hasRoom(n = 1): boolean {
    const { maxBatch, maxQueue } = this.limits;
    const free = Math.max(0, maxBatch - this.#running().length);
    return this.#waiting.length + n <= maxQueue + free;
  }

  #running(): Row[] {
    return this.#slots.filter((r): r is Row => r !== undefined);
  }

  /**
   * Generates after `prompt` in the shared batch; yields each new token id as it is chosen (a stop id that ended
   * generation included). Throws {@link BatcherFullError} (on the first `next()`) when the queue is full. Breaking
   * out of the loop, or aborting `signal`, frees the row at the next step.
   */
  async *stream(prompt: number[], opts: GenerateOptions, signal?: AbortSignal): AsyncGenerator<number> {
    checkInputs("Batcher.stream", this.#model, [prompt], opts, () => "prompt");
    if (!opts.maxNewTokens) return;
    chooseToken([0], [], { ...opts, vocabLimit: 1, repetitionPenalty: 1 }, () => 0); // the row's options, checked now
    if (opts.vocabLimit !== undefined && !(Number.isInteger(opts.vocabLimit) && opts.vocabLimit >= 1)) {
      throw new RangeError(`vocabLimit must be an integer >= 1 (the tokenizer's id limit), got ${opts.vocabLimit}`);
    }
    if (!this.hasRoom(1)) throw new BatcherFullError(this.limits.maxBatch, this.limits.maxQueue);
    const row: Row = {
      prompt,
      opts,
      out: new TokenChannel(),
      seen: [...prompt],
      count: 0,
      stop: new Set(opts.stop ?? []),
      random: seededRandom(opts.seed ?? 0),
      slot: -1,
      pos: prompt.length,
      last: 0,
      done: false,
    };
    const abort = () => row.done = true;
    signal?.addEventListener("abort", abort);
    if (signal?.aborted) return;
    this.#waiting.push(row);
    this.#loop ??= this.#run();
    try {
      yield* row.out;
    } finally {
      row.done = true;
      signal?.removeEventListener("abort", abort);
      const i = this.#waiting.indexOf(row);
      if (i >= 0) this.#waiting.splice(i, 1);
    }
  }

  /** Generates for every row of `prompts` through the batch; resolves with each row's tokens. */
  async generateAll(prompts: number[][], opts: (b: number) => GenerateOptions): Promise<number[][]> {
    return await Promise.all(prompts.map(async (p, b) => {
      const out: number[] = [];
      for await (const t of this.stream(p, opts(b))) out.push(t);
      return out;
    }));
  }

  /** The decode loop: admits waiting rows, steps the batch, retires finished rows, until none is left. */
  async #run(): Promise<void> {
    await Promise.resolve(); // let requests submitted in the same tick join the first step
    try {
      for (;;) {
        this.#retire();
        this.#rejoin();
        await this.#admit();
        if (this.#rejoin()) continue; // a row just admitted is already at the switch
        const rows = this.#running();
        if (!rows.length) {
          if (this.#waiting.length) continue;
          this.#reset(); // in the same tick as the check: a request coming later starts a new loop
          return;
        }
        await this.#step(rows);
      }
    } catch (e) {
      for (const r of [...this.#running(), ...this.#waiting.splice(0)]) r.out.fail(e as Error);
      this.#reset();
    }
  }

  #reset(): void {
    this.#slots = [];
    this.#C = 0;
    this.#loop = undefined;
  }

  #retire(): void {
    this.#slots.forEach((r, b) => {
      if (r?.done) {
        r.out.close();
        this.#slots[b] = undefined;
      }
    });
    for (const r of this.#waiting.filter((r) => r.done)) {
      this.#waiting.splice(this.#waiting.indexOf(r), 1);
      r.out.close();
    }
  }

  /**
   * Phi-3 longrope: rows about to feed position original_max_position_embeddings leave their slot for the front of
   * the queue, to be prefilled again with their whole sequence (long factors on every key). True when one did.
   */
  #rejoin(): boolean {
    const at = longropeReprefill(this.#model.config);
    let moved = false;
    this.#slots.forEach((r, b) => {
      if (at >= 0 && r && !r.done && r.pos === at) {
        this.#slots[b] = undefined;
        r.slot = -1;
        r.resumed = moved = true;
        this.#waiting.unshift(r);
      }
    });
    return moved;
  }

  /** Chooses row r's next token from its logits and hands it to its consumer. */
  #choose(r: Row, logits: Float32Array): void {
    let t: number;
    try {
      t = chooseToken(logits, r.seen, r.opts, r.random);
    } catch (e) { // this row's options (checked before it was queued; never the batch's failure)
      r.done = true;
      r.out.fail(e as Error);
      return;
    }
    r.seen.push(t);
    r.last = t;
    r.out.push(t);
    if (r.stop.has(t) || ++r.count >= r.opts.maxNewTokens) r.done = true;
  }

  /**
   * Admits the waiting rows there is room for, together: one prefill of all their prompts into a staging cache,
   * then one copy of the staged rows into free slots of the batch.
   */
  async #admit(): Promise<void> {
    const model = this.#model, c = model.config, V = c.vocab, H = c.kvHeads;
    const joining: Row[] = [];
    const room = this.limits.maxBatch - this.#running().length;
    while (this.#waiting.length && joining.length < room) {
      const r = this.#waiting.shift()!;
      if (r.done) r.out.close();
      else joining.push(r);
    }
    if (!joining.length) return;
    const free = this.#slots.flatMap((x, b) => (x === undefined ? [b] : []));
    const slots = joining.map((_, j) => free[j] ?? this.#slots.length + j - free.length);
    const B = this.#slots.length, B2 = Math.max(B, batchBucket(Math.max(...slots) + 1));
    // A row joining again prefills its prompt and the tokens it has chosen (`seen`); its cache need is the same.
    const C2 = Math.max(this.#C, ...joining.map((r) => cacheBucket(r.prompt.length + r.opts.maxNewTokens)));
    if (B2 !== B || C2 !== this.#C) await this.#grow(B2, C2);
    // The joining prompts are prefilled together (rows padded to a bucket, as generateBatch prefills) into a
    // staging cache of their own, then one copy moves the staged rows into the batch.
    const C = this.#C, P = batchBucket(joining.length);
    const lens = Array.from({ length: P }, (_, j) => joining[j]?.seen.length ?? 1); // padding rows: one token 0
    const Lb = Math.min(bucketLength(Math.max(...lens)), C);
    ensureCache(model, P, C, STAGE);
    const prefill = await compiled(model, P, C, Lb, false, STAGE);
    const ids = new Int32Array(P * Lb), positions = new Int32Array(P * Lb), segments = new Int32Array(P * Lb);
    const last = new Int32Array(P);
    for (let j = 0; j < P; j++) {
      if (joining[j]) ids.set(joining[j].seen, j * Lb);
      segments.fill(1, j * Lb, j * Lb + lens[j]);
      for (let i = 0; i < Lb; i++) positions[j * Lb + i] = i;
      last[j] = j * Lb + lens[j] - 1;
    }
    const logits = f32((await prefill.run({ ids, positions, segments, last }, ["logits"])).logits);
    // Dst row s·Hkv + h takes: its own row, or (s the slot of joining row j) row j's, after the batch's rows.
    const joined = new Map(slots.map((s, j) => [s, j]));
    const rows = new Int32Array(B2 * H);
    for (let i = 0; i < rows.length; i++) {
      const j = joined.get(Math.floor(i / H));
      rows[i] = j === undefined ? i : (B2 + j) * H + (i % H);
    }
    await (await copyGraph(model, [{ B: B2, C }, { B: P, C, ns: STAGE }], { B: B2, C })).run({ rows }, []);
    joining.forEach((r, j) => {
      r.slot = slots[j];
      this.#slots[slots[j]] = r;
      if (!r.resumed) this.#stats.admitted++;
      r.pos = r.seen.length;
      this.#choose(r, logits.subarray(j * V, (j + 1) * V));
    });
  }
  /** Moves the batch's caches into B2 rows of C2 slots (rows keep their slots). */
  async #grow(B2: number, C2: number): Promise<void> {
    const model = this.#model, B = this.#slots.length, C = this.#C;
    ensureCache(model, B2, C2);
    if (B && this.#running().length) {
      const H = model.config.kvHeads, rows = new Int32Array(B2 * H);
      for (let i = 0; i < rows.length; i++) rows[i] = i < B * H ? i : 0;
      await (await copyGraph(model, [{ B, C }], { B: B2, C: C2 })).run({ rows }, []);
    }
    while (this.#slots.length < B2) this.#slots.push(undefined);
    this.#C = C2;
  }

  /** One decode step for every row of the batch (free rows feed token 0 at position 0, unread). */
  async #step(rows: Row[]): Promise<void> {
    const model = this.#model, c = model.config, B = this.#slots.length, C = this.#C, V = c.vocab;
    const windows = layerWindows(c);
    const ids = new Int32Array(B), pos = new Int32Array(B);
    const masks = windows.map(() => new Float32Array(B * (C + 1)));
    for (let b = 0; b < B; b++) {
      const r = this.#slots[b];
      if (r) [ids[b], pos[b]] = [r.last, r.pos++];
      windows.forEach((w, i) => masks[i].set(decodeMask(C, pos[b], w), b * (C + 1)));
    }
    const feeds: Record<string, ArrayLike<number>> = { ids, positions: pos };
    windows.forEach((w, i) => feeds[`mask${w}`] = masks[i]);
    const step = await compiled(model, B, C, 1, true, NS);
    const logits = f32((await step.run(feeds, ["logits"])).logits);
    this.#stats.steps++;
    this.#stats.maxRows = Math.max(this.#stats.maxRows, rows.length);
    for (const r of rows) if (!r.done) this.#choose(r, logits.subarray(r.slot * V, (r.slot + 1) * V));
  }
}
