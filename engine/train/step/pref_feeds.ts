/**
 * The feeds of a preference step's micro-batch k from LLaMA-Factory's processed records (engine/data/process_pref.ts):
 * pairs for dpo and rm (chosen rows then rejected rows), examples with their KL rows and tags for kto.
 * @module
 */
import type { KtoRecord, PairwiseRecord } from "../../data/process.ts";
import { collate, type MicroBatch } from "../batches.ts";

/** Feeds of one micro-batch, by name. */
export type PrefFeeds = Record<string, Int32Array | Float32Array>;

function rowFeeds(k: number, pre: string, b: MicroBatch, ...more: MicroBatch[]): PrefFeeds {
  const cat = (f: (m: MicroBatch) => Int32Array) => {
    const parts = [b, ...more].map(f), out = new Int32Array(parts.reduce((n, x) => n + x.length, 0));
    let at = 0;
    for (const x of parts) (out.set(x, at), at += x.length);
    return out;
  };
  return {
    [`${pre}ids_${k}`]: cat((m) => m.ids),
    [`${pre}positions_${k}`]: cat((m) => m.positions),
    [`${pre}segments_${k}`]: cat((m) => m.segments),
    [`${pre}labels_${k}`]: cat((m) => m.labels),
  };
}

const realRows = (n: number, B: number) => Float32Array.from({ length: B }, (_, i) => (i < n ? 1 : 0));

/**
 * Feeds of micro-batch k of stage dpo / rm from at most B pairwise records (engine/data/process_pref.ts): chosen
 * rows then rejected rows, each side padded to B rows of length L, labels shifted as the SFT collator shifts them.
 */
export function pairwiseFeeds(records: readonly PairwiseRecord[], B: number, L: number, k = 0): PrefFeeds {
  if (records.length > B) throw new Error(`pairwiseFeeds: ${records.length} pairs for a micro-batch of ${B}`);
  const side = (p: "chosen" | "rejected") =>
    collate(
      records.map((r) => ({
        input_ids: r[`${p}_input_ids`],
        attention_mask: r[`${p}_attention_mask`],
        labels: r[`${p}_labels`],
      })),
      B,
      L,
    );
  return { ...rowFeeds(k, "", side("chosen"), side("rejected")), [`rows_${k}`]: realRows(records.length, B) };
}

/** Feeds of micro-batch k of stage kto from at most B KTO records: the examples, their KL rows, tags. */
export function ktoFeeds(records: readonly KtoRecord[], B: number, L: number, k = 0): PrefFeeds {
  if (records.length > B) throw new Error(`ktoFeeds: ${records.length} examples for a micro-batch of ${B}`);
  const main = collate(records, B, L);
  const kl = collate(
    records.map((r) => ({ input_ids: r.kl_input_ids, attention_mask: r.kl_attention_mask, labels: r.kl_labels })),
    B,
    L,
  );
  return {
    ...rowFeeds(k, "", main),
    ...rowFeeds(k, "kl_", kl),
    [`tags_${k}`]: Float32Array.from({ length: B }, (_, i) => (records[i]?.kto_tags ? 1 : 0)),
    [`rows_${k}`]: realRows(records.length, B),
  };
}
