/**
 * From processed records (input_ids, attention_mask, labels) to the micro-batches a train step eats:
 * a seeded order per epoch, rows padded on the right to a length bucket, labels shifted as transformers
 * shifts them (the logits at i predict the label at i + 1), attention segments from the mask.
 * @module
 */
import type { SftRecord } from "../data/process.ts";
import { mulberry32 } from "../util/rng.ts";

/** One micro-batch, flat row-major [B, L]. */
export interface MicroBatch {
  B: number;
  L: number;
  ids: Int32Array;
  positions: Int32Array;
  /** Attention stays within equal ids: 0 padding, 1 a plain row, 1, 2, 3... packed sequences. */
  segments: Int32Array;
  /** Shifted labels, -100 where no loss is taken. */
  labels: Int32Array;
  /** Real (non-pad) tokens. */
  tokens: number;
  /** Positions that carry a loss. */
  targets: number;
}

/**
 * The order of `n` records in `epoch`: a Fisher–Yates shuffle seeded by (seed, epoch); stable across runs. The
 * trainer passes HF's sampler seed (`data_seed`, else `seed`) and `shuffle: !disable_shuffling` (LF's
 * `disable_shuffling` takes a sequential sampler: the records in order, every epoch).
 */
export function epochOrder(n: number, seed: number, epoch: number, shuffle = true): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  if (!shuffle) return order;
  const r = mulberry32((seed * 1000003 + epoch * 7919) >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/**
 * HF's `group_by_length` (transformers' `LengthGroupedSampler` / `get_length_grouped_indices`): the epoch's seeded
 * order cut into mega-batches of `megaMult × batchSize` records (`megaMult` = min(n / (4 × batchSize), 50), at least
 * 1), each sorted by length, longest first, and the longest record of all swapped to the front so the first batch is
 * the largest (an out-of-memory error shows at once). `batchSize` is the records of one optimizer step (the Trainer
 * passes `train_batch_size × gradient_accumulation_steps`). The permutation is Whetstone's seeded shuffle
 * ({@linkcode epochOrder}), not torch's `randperm`, so the order differs from HF's while following the same rule.
 *
 * @example
 * ```ts
 * import { lengthGroupedOrder } from "./batches.ts";
 * const lengths = [5, 90, 7, 60, 8, 70, 6, 80];
 * const order = lengthGroupedOrder(lengths, 2, 42, 0);
 * console.assert(lengths[order[0]] === 90); // the longest first
 * ```
 */
export function lengthGroupedOrder(
  lengths: readonly number[],
  batchSize: number,
  seed: number,
  epoch: number,
): number[] {
  if (!(batchSize >= 1)) throw new Error(`group_by_length: expected a batch size of at least 1, got ${batchSize}`);
  const n = lengths.length;
  const order = epochOrder(n, seed, epoch);
  const megaMult = Math.max(1, Math.min(Math.floor(n / (batchSize * 4)), 50));
  const size = megaMult * batchSize;
  const megas: number[][] = [];
  for (let i = 0; i < n; i += size) {
    // Stable sort, descending by length, as Python's sorted(..., reverse=True) keeps equal lengths in their order.
    megas.push(order.slice(i, i + size).sort((a, b) => lengths[b] - lengths[a]));
  }
  let max = 0;
  for (let m = 1; m < megas.length; m++) if (lengths[megas[m][0]] > lengths[megas[max][0]]) max = m;
  if (max > 0) [megas[0][0], megas[max][0]] = [megas[max][0], megas[0][0]];
  return megas.flat();
}

/**
 * The lengths `group_by_length` groups by: each record's `input_ids` length, as HF's `LengthGroupedSampler` reads them.
 * Pairwise records (rm, dpo) have none, and HF refuses them too ("Can only automatically infer lengths for datasets
 * whose items are dictionaries with an 'input_ids' key").
 */
export function lengthsOf(records: readonly unknown[], stage: string): number[] {
  return records.map((r, i) => {
    const ids = (r as { input_ids?: ArrayLike<number> }).input_ids;
    if (!ids) {
      throw new Error(
        `group_by_length: stage ${stage} has no input_ids in its records (record ${i}), so there are no lengths to ` +
          `group by (HF's LengthGroupedSampler refuses such a dataset too); set group_by_length: false`,
      );
    }
    return ids.length;
  });
}

/** Rounds a length up to a multiple of `multiple` (at least `multiple`). */
export function bucket(len: number, multiple: number): number {
  return Math.max(multiple, Math.ceil(len / multiple) * multiple);
}

/**
 * Collates `rows` into a micro-batch of `B` rows (missing rows are all padding) and length `L` (at least
 * the longest row).
 */
export function collate(rows: readonly SftRecord[], B: number, L: number): MicroBatch {
  if (rows.length > B) throw new Error(`collate: ${rows.length} rows for a batch of ${B}`);
  const ids = new Int32Array(B * L), positions = new Int32Array(B * L), segments = new Int32Array(B * L);
  const labels = new Int32Array(B * L).fill(-100);
  let tokens = 0, targets = 0;
  rows.forEach((r, b) => {
    const n = r.input_ids.length;
    if (n > L) throw new Error(`collate: a row of ${n} tokens does not fit length ${L}`);
    for (let i = 0; i < n; i++) {
      const k = b * L + i;
      ids[k] = r.input_ids[i];
      positions[k] = r.position_ids?.[i] ?? i;
      segments[k] = r.attention_mask[i];
      if (r.attention_mask[i]) tokens++;
      // Shifted: the loss at position i is against the label of i + 1, within the same segment.
      if (i + 1 < n && r.labels[i + 1] !== -100 && r.attention_mask[i + 1] === r.attention_mask[i]) {
        labels[k] = r.labels[i + 1];
        targets++;
      }
    }
  });
  return { B, L, ids, positions, segments, labels, tokens, targets };
}
