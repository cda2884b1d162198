/**
 * The feeds of a preference step's micro-batch k from LLaMA-Factory's processed records (engine/data/process_pref.ts):
 * pairs for dpo and rm (chosen rows then rejected rows), examples with their KL rows and tags for kto.
 * @module
 */
import type { KtoRecord, PairwiseRecord } from "../../data/process.ts";
import { collate, type MicroBatch } from "../batches.ts";
import { neftuneNoise, neftuneSeed } from "../../nn/neftune.ts";
import { noiseInputs, type PrefObjective } from "./pref.ts";

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
 * LD-DPO's rear tokens (LF's `get_batch_logps` with ld_alpha): of shifted `labels` [2B·L] (chosen rows, then
 * rejected rows), the labels past each row's public part — from its first labelled position, as many positions as
 * the shorter response of its pair has labels — and −100 elsewhere. The policy's log-prob is then
 * front + ld_alpha · rear = all − (1 − ld_alpha) · rear.
 */
export function ldRearLabels(labels: Int32Array, B: number, L: number): Int32Array {
  const out = new Int32Array(labels.length).fill(-100);
  const count = (r: number) => labels.subarray(r * L, (r + 1) * L).reduce((n, x) => n + (x !== -100 ? 1 : 0), 0);
  for (let i = 0; i < B; i++) {
    const min = Math.min(count(i), count(B + i));
    for (const r of [i, B + i]) {
      const row = labels.subarray(r * L, (r + 1) * L);
      const start = Math.max(0, row.findIndex((x) => x !== -100)); // torch.argmax of the mask: 0 when none
      for (let t = start + min; t < L; t++) if (row[t] !== -100) out[r * L + t] = row[t];
    }
  }
  return out;
}

/**
 * Feeds of micro-batch k of stage dpo / rm from at most B pairwise records (engine/data/process_pref.ts): chosen
 * rows then rejected rows, each side padded to B rows of length L, labels shifted as the SFT collator shifts them;
 * with `ld`, also `rear_labels_k` ({@linkcode ldRearLabels}).
 */
export function pairwiseFeeds(
  records: readonly PairwiseRecord[],
  B: number,
  L: number,
  k = 0,
  ld = false,
): PrefFeeds {
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
  const feeds = { ...rowFeeds(k, "", side("chosen"), side("rejected")), [`rows_${k}`]: realRows(records.length, B) };
  // `ld`: LD-DPO's rear labels (ld_alpha) as `rear_labels_k`.
  if (ld) feeds[`rear_labels_${k}`] = ldRearLabels(feeds[`labels_${k}`] as Int32Array, B, L);
  return feeds;
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

/**
 * NEFTune's noise feeds of micro-batch k ({@linkcode noiseInputs}: one per training-mode forward, [rows, L, H] each),
 * uniform in ±alpha/√(L·H) as transformers draws them; forward j of micro-batch k draws from
 * neftuneSeed(`stepSeed`, 4k + j), so every forward gets fresh noise and a seeded run repeats.
 */
export function prefNoiseFeeds(
  o: PrefObjective,
  k: number,
  B: number,
  L: number,
  H: number,
  alpha: number,
  stepSeed: number,
): PrefFeeds {
  const out: PrefFeeds = {};
  noiseInputs(o, k, B).forEach(({ name, rows }, j) => {
    out[name] = neftuneNoise(neftuneSeed(stepSeed, 4 * k + j), rows, L, H, alpha);
  });
  return out;
}
