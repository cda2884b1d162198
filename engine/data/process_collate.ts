/**
 * Batching processed records for training, as LF's collators pad (`DataCollatorForSeq2Seq`, padding side right):
 * input ids with the pad id, attention mask with 0, labels with -100, position ids with 0, to the longest row rounded
 * up to a bucket multiple (LF uses 8 when training; Whetstone defaults to 64 so that few distinct shapes are traced).
 * Pairwise batches are all chosen rows then all rejected rows; KTO batches pad the main and KL rows separately.
 * @module
 */
import { IGNORE_INDEX, type KtoRecord, type PairwiseRecord } from "./process_base.ts";

/** Options of the collators. */
export interface CollateOptions {
  /** The pad id (the fixed tokenizer's pad, `ChatTemplate.padId`). */
  padId: number;
  /** Pad to a multiple of this (default 64). */
  multiple?: number;
  /** Pad to at least this length (e.g. a fixed training shape); still rounded up to `multiple`. */
  minLength?: number;
  /** Label of padding (default -100). */
  labelPad?: number;
}

/** A padded batch, row-major. `position_ids` only when the records have them (packing). */
export interface Batch {
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  position_ids?: number[][];
  /** The padded length of every row. */
  length: number;
}

/** A record the collator pads (SFT, pre-training, unsupervised, or one side of a preference record). */
export interface CollatableRecord {
  input_ids: readonly number[];
  attention_mask?: readonly number[];
  labels?: readonly number[];
  position_ids?: readonly number[];
}

function padTo(row: readonly number[], length: number, value: number): number[] {
  if (row.length > length) throw new Error(`collate: row of length ${row.length} exceeds the batch length ${length}`);
  const out = row.slice();
  while (out.length < length) out.push(value);
  return out;
}

/** Pads records into one batch (labels default to the input ids when a record has none, as for pre-training). */
export function collate(records: readonly CollatableRecord[], opts: CollateOptions): Batch {
  const multiple = opts.multiple ?? 64;
  if (!Number.isInteger(multiple) || multiple < 1) throw new Error(`collate: multiple must be ≥ 1, got ${multiple}`);
  if (records.length === 0) throw new Error("collate: expected at least one record, got none");
  const longest = Math.max(opts.minLength ?? 0, ...records.map((r) => r.input_ids.length));
  const length = Math.ceil(longest / multiple) * multiple;
  const labelPad = opts.labelPad ?? IGNORE_INDEX;
  const hasPositions = records.some((r) => r.position_ids !== undefined);
  const batch: Batch = {
    input_ids: records.map((r) => padTo(r.input_ids, length, opts.padId)),
    attention_mask: records.map((r) => padTo(r.attention_mask ?? r.input_ids.map(() => 1), length, 0)),
    labels: records.map((r) => padTo(r.labels ?? r.input_ids, length, labelPad)),
    length,
  };
  if (hasPositions) {
    batch.position_ids = records.map((r) => padTo(r.position_ids ?? r.input_ids.map((_, i) => i), length, 0));
  }
  return batch;
}

/** LF's `PairwiseDataCollatorWithPadding`: rows 0..n-1 are the chosen sequences, n..2n-1 the rejected ones. */
export function collatePairwise(records: readonly PairwiseRecord[], opts: CollateOptions): Batch {
  const side = (p: "chosen" | "rejected") =>
    records.map((r) => ({
      input_ids: r[`${p}_input_ids`],
      attention_mask: r[`${p}_attention_mask`],
      labels: r[`${p}_labels`],
    }));
  return collate([...side("chosen"), ...side("rejected")], opts);
}

/** LF's `KTODataCollatorWithPadding`: the main batch, the KL batch (padded on its own) and the tags. */
export function collateKto(
  records: readonly KtoRecord[],
  opts: CollateOptions,
): { batch: Batch; kl: Batch; ktoTags: boolean[] } {
  return {
    batch: collate(records, opts),
    kl: collate(
      records.map((r) => ({ input_ids: r.kl_input_ids, attention_mask: r.kl_attention_mask, labels: r.kl_labels })),
      opts,
    ),
    ktoTags: records.map((r) => r.kto_tags),
  };
}
