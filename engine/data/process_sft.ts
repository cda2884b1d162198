/**
 * Supervised fine-tuning processing (LF's `SupervisedDatasetProcessor` and `PackedSupervisedDatasetProcessor`).
 * @module
 */
import type { AlignedExample } from "./aligned.ts";
import type { ChatTemplate } from "./template.ts";
import {
  type BatchInput,
  type BatchOutput,
  describe,
  greedyKnapsack,
  IGNORE_INDEX,
  inferSeqlen,
  type ResolvedDataArgs,
  type SftRecord,
} from "./process_base.ts";

/** The options of {@link encodeSupervised}. */
export interface SupervisedOptions {
  cutoffLen: number;
  trainOnPrompt?: boolean;
  maskHistory?: boolean;
}

/** Whether LF's SFT processor accepts a row: an odd number of prompt messages and exactly one response. */
export function isValidSupervised(ex: AlignedExample): boolean {
  return ex.prompt.length % 2 === 1 && ex.response.length === 1;
}

/**
 * One SFT example → (input_ids, labels), LF's `_encode_data_example`: per turn (from the last with `maskHistory`),
 * stop once the running length reaches the cutoff, truncate (prompt, response) by {@link inferSeqlen} within the
 * remaining budget keeping the heads, mask prompts (or train on them), mask all but the last answer with
 * `maskHistory`, and with `efficient_eos` templates put the eos label on the next prompt's first token and append
 * eos at the end.
 */
export function encodeSupervised(
  tpl: ChatTemplate,
  ex: AlignedExample,
  opts: SupervisedOptions,
): { input_ids: number[]; labels: number[] } {
  const { cutoffLen, trainOnPrompt = false, maskHistory = false } = opts;
  const efficientEos = tpl.spec.efficientEos;
  const discardingHistoryCot = maskHistory && !tpl.spec.preserveThinking;
  let pairs = tpl.encodeMultiturn([...ex.prompt, ...ex.response], ex.system, ex.tools, discardingHistoryCot);
  let inputIds: number[] = [];
  let labels: number[] = [];
  let total = efficientEos ? 1 : 0;
  if (maskHistory) pairs = pairs.toReversed();
  for (const [turn, [src, tgt]] of pairs.entries()) {
    if (total >= cutoffLen) break;
    const [sourceLen, targetLen] = inferSeqlen(src.length, tgt.length, cutoffLen - total);
    const sourceIds = src.slice(0, sourceLen);
    const targetIds = tgt.slice(0, targetLen);
    total += sourceLen + targetLen;
    let sourceLabel: number[];
    if (trainOnPrompt) sourceLabel = sourceIds;
    else if (efficientEos && turn !== 0) {
      sourceLabel = [tpl.eosId, ...new Array<number>(Math.max(sourceLen - 1, 0)).fill(IGNORE_INDEX)];
    } else sourceLabel = new Array<number>(sourceLen).fill(IGNORE_INDEX);
    const targetLabel = maskHistory && turn !== 0 ? new Array<number>(targetLen).fill(IGNORE_INDEX) : targetIds;
    if (maskHistory) {
      inputIds = [...sourceIds, ...targetIds, ...inputIds];
      labels = [...sourceLabel, ...targetLabel, ...labels];
    } else {
      inputIds.push(...sourceIds, ...targetIds);
      labels.push(...sourceLabel, ...targetLabel);
    }
  }
  if (efficientEos) {
    inputIds.push(tpl.eosId);
    labels.push(tpl.eosId);
  }
  return { input_ids: inputIds, labels };
}

/** LF's `SupervisedDatasetProcessor.preprocess_dataset` on one batch. */
export function processSupervised(
  batch: BatchInput,
  tpl: ChatTemplate,
  args: ResolvedDataArgs,
): BatchOutput<SftRecord> {
  const out: BatchOutput<SftRecord> = { records: [], sources: [], warnings: [] };
  for (const [k, ex] of batch.examples.entries()) {
    if (!isValidSupervised(ex)) {
      out.warnings.push(`Dropped invalid example: ${describe(ex)}`);
      continue;
    }
    const { input_ids, labels } = encodeSupervised(tpl, ex, args);
    out.records.push({ input_ids, attention_mask: new Array<number>(input_ids.length).fill(1), labels });
    out.sources.push([batch.offset + k]);
  }
  return out;
}

/**
 * LF's `PackedSupervisedDatasetProcessor` on one batch: examples encoded with the (already decremented) cutoff are
 * packed by {@link greedyKnapsack}; among equal lengths the last-added example goes first. Each pack is padded to
 * `cutoffLen + 1` with the pad id (label -100, position 0, attention 1 — or 0 with neat packing, whose attention mask
 * holds the member index 1, 2, 3...). `position_ids` restart at 0 for each member.
 */
export function processPackedSupervised(
  batch: BatchInput,
  tpl: ChatTemplate,
  args: ResolvedDataArgs,
): BatchOutput<SftRecord> {
  const out: BatchOutput<SftRecord> = { records: [], sources: [], warnings: [] };
  const encoded: { input_ids: number[]; labels: number[]; source: number }[] = [];
  const lengths: number[] = [];
  const byLength = new Map<number, number[]>();
  for (const [k, ex] of batch.examples.entries()) {
    if (!isValidSupervised(ex)) {
      out.warnings.push(`Dropped invalid example: ${describe(ex)}`);
      continue;
    }
    const e = encodeSupervised(tpl, ex, args);
    const length = e.input_ids.length;
    if (length > args.cutoffLen) {
      out.warnings.push(`Dropped lengthy example with length ${length} > ${args.cutoffLen}.`);
      continue;
    }
    lengths.push(length);
    if (!byLength.has(length)) byLength.set(length, []);
    byLength.get(length)!.push(encoded.length);
    encoded.push({ ...e, source: batch.offset + k });
  }
  for (const knapsack of greedyKnapsack(lengths, args.cutoffLen)) {
    const rec: Required<SftRecord> = { input_ids: [], attention_mask: [], labels: [], position_ids: [] };
    const sources: number[] = [];
    for (const [i, length] of knapsack.entries()) {
      const e = encoded[byLength.get(length)!.pop()!];
      rec.input_ids.push(...e.input_ids);
      rec.labels.push(...e.labels);
      for (let p = 0; p < length; p++) {
        rec.position_ids.push(p);
        rec.attention_mask.push(args.neatPacking ? i + 1 : 1);
      }
      sources.push(e.source);
    }
    const pad = args.cutoffLen + 1 - rec.input_ids.length;
    for (let p = 0; p < pad; p++) {
      rec.input_ids.push(tpl.padId);
      rec.position_ids.push(0);
      rec.labels.push(IGNORE_INDEX);
      rec.attention_mask.push(args.neatPacking ? 0 : 1);
    }
    out.records.push(rec);
    out.sources.push(sources);
  }
  return out;
}
