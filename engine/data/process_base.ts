/**
 * What every stage processor shares: LF's data arguments and their rules, the record types, the length helpers.
 * Apart from `process.ts` (the entry point that dispatches to the stage files) so the stage files do not import it.
 * @module
 */
import type { AlignedExample } from "./aligned.ts";

/** LF's `IGNORE_INDEX`: the label of positions without loss. */
export const IGNORE_INDEX = -100;

/** A training stage (LF's `stage`); `dpo` and `rm` both use pairwise processing, `ppo` the unsupervised one. */
export type Stage = "pt" | "sft" | "rm" | "dpo" | "kto" | "ppo";

/** The data arguments that shape processing (LF's `DataArguments`, camel-cased). */
export interface DataArgs {
  stage: Stage;
  /** `cutoff_len` (default 2048). */
  cutoffLen?: number;
  trainOnPrompt?: boolean;
  maskHistory?: boolean;
  /** `packing`; unset means true for `pt`, false otherwise. */
  packing?: boolean | null;
  neatPacking?: boolean;
  /** `preprocessing_batch_size` (default 1000). */
  batchSize?: number;
  /**
   * Pre-training: whether the tokenizer "adds BOS" (LF reads `getattr(tokenizer, "add_bos_token", False)`).
   * Default: `add_bos_token` of tokenizer_config.json.
   */
  addBosToken?: boolean;
}

/** {@link DataArgs} after LF's `__post_init__` and `get_train_args` rules. */
export interface ResolvedDataArgs {
  stage: Stage;
  /** The effective cutoff (one less than given when packing was requested). */
  cutoffLen: number;
  trainOnPrompt: boolean;
  maskHistory: boolean;
  packing: boolean;
  neatPacking: boolean;
  batchSize: number;
  addBosToken?: boolean;
}

/**
 * Applies LF's argument rules: `mask_history` excludes `train_on_prompt`; `neat_packing` implies `packing`; an
 * explicit `packing` lowers `cutoff_len` by one; `pt` packs by default (without the decrement); `neat_packing`,
 * `train_on_prompt` and `mask_history` are for `sft` only.
 */
export function resolveDataArgs(a: DataArgs): ResolvedDataArgs {
  const stages: Stage[] = ["pt", "sft", "rm", "dpo", "kto", "ppo"];
  if (!stages.includes(a.stage)) throw new Error(`stage: expected one of ${stages.join(", ")}, got "${a.stage}"`);
  let cutoffLen = a.cutoffLen ?? 2048;
  if (!Number.isInteger(cutoffLen) || cutoffLen < 1) {
    throw new Error(`cutoff_len: expected a positive integer, got ${a.cutoffLen}`);
  }
  const batchSize = a.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`preprocessing_batch_size: expected a positive integer, got ${a.batchSize}`);
  }
  const trainOnPrompt = a.trainOnPrompt ?? false;
  const maskHistory = a.maskHistory ?? false;
  const neatPacking = a.neatPacking ?? false;
  if (maskHistory && trainOnPrompt) throw new Error("`mask_history` is incompatible with `train_on_prompt`.");
  if (a.stage !== "sft") {
    if (neatPacking) throw new Error("`neat_packing` cannot be set as True except SFT.");
    if (trainOnPrompt || maskHistory) {
      throw new Error("`train_on_prompt` or `mask_history` cannot be set as True except SFT.");
    }
  }
  let packing = a.packing ?? null;
  if (neatPacking) packing = true;
  if (packing) cutoffLen -= 1;
  if (packing === null) packing = a.stage === "pt";
  return {
    stage: a.stage,
    cutoffLen,
    trainOnPrompt,
    maskHistory,
    packing,
    neatPacking,
    batchSize,
    addBosToken: a.addBosToken,
  };
}

/** LF's `infer_seqlen`: how many prompt and response tokens to keep within `cutoffLen`. */
export function inferSeqlen(sourceLen: number, targetLen: number, cutoffLen: number): [number, number] {
  let maxTarget: number;
  if (targetLen * 2 < cutoffLen) maxTarget = cutoffLen;
  else if (sourceLen * 2 < cutoffLen) maxTarget = cutoffLen - sourceLen;
  else maxTarget = Math.trunc(cutoffLen * (targetLen / (sourceLen + targetLen)));
  const newTarget = Math.min(maxTarget, targetLen);
  const newSource = Math.min(Math.max(cutoffLen - newTarget, 0), sourceLen);
  return [newSource, newTarget];
}

/**
 * LF's `greedy_knapsack`: sorts lengths ascending and fills each knapsack by repeatedly taking the largest length
 * that still fits. Returns the lengths per knapsack in the order taken.
 */
export function greedyKnapsack(lengths: readonly number[], capacity: number): number[][] {
  const numbers = [...lengths].sort((a, b) => a - b);
  const knapsacks: number[][] = [];
  while (numbers.length > 0) {
    const current: number[] = [];
    let remaining = capacity;
    for (;;) {
      // bisect_right(numbers, remaining) - 1
      let lo = 0, hi = numbers.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (remaining < numbers[mid]) hi = mid;
        else lo = mid + 1;
      }
      if (lo === 0) break;
      remaining -= numbers[lo - 1];
      current.push(numbers.splice(lo - 1, 1)[0]);
    }
    if (current.length === 0) throw new Error(`greedyKnapsack: length ${numbers[0]} exceeds capacity ${capacity}`);
    knapsacks.push(current);
  }
  return knapsacks;
}

/** SFT / pre-training / unsupervised record. Packed SFT adds `position_ids`; neat packing puts segment ids 1,2,3... (0 on padding) in `attention_mask`. */
export interface SftRecord {
  input_ids: number[];
  attention_mask: number[];
  labels: number[];
  position_ids?: number[];
}

/** Pairwise (rm/dpo) record. */
export interface PairwiseRecord {
  chosen_input_ids: number[];
  chosen_attention_mask: number[];
  chosen_labels: number[];
  rejected_input_ids: number[];
  rejected_attention_mask: number[];
  rejected_labels: number[];
}

/** KTO record: the example, its KL partner (prompt with a mismatched response) and the desirability tag. */
export interface KtoRecord {
  input_ids: number[];
  attention_mask: number[];
  labels: number[];
  kl_input_ids: number[];
  kl_attention_mask: number[];
  kl_labels: number[];
  kto_tags: boolean;
}

/** Any processed record. */
export type ProcessedRecord = SftRecord | PairwiseRecord | KtoRecord;

/** What {@link processDataset} returns. */
export interface ProcessResult<R extends ProcessedRecord = ProcessedRecord> {
  records: R[];
  /** Per record, the indices of the examples it was made from (several for packed / pre-training blocks). */
  sources: number[][];
  /** LF's warnings ("Dropped invalid example: ...", "Your dataset only has one preference type."). */
  warnings: string[];
  args: ResolvedDataArgs;
}

/** One map batch handed to a stage processor: the examples and their global indices. */
export interface BatchInput {
  examples: readonly AlignedExample[];
  offset: number;
}

/** Output of one stage processor on one batch. */
export interface BatchOutput<R> {
  records: R[];
  sources: number[][];
  warnings: string[];
}

/** Short text of an example for warnings. */
export function describe(ex: AlignedExample): string {
  const msgs = [...ex.prompt, ...ex.response].map((m) => ({ role: m.role, content: m.content.slice(0, 60) }));
  return `${ex.source.dataset} row ${ex.source.row}: ${JSON.stringify(msgs).slice(0, 300)}`;
}
