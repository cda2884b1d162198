/**
 * Preference processing: pairwise for rm/dpo (LF's `PairwiseDatasetProcessor`), KTO (`FeedbackDatasetProcessor`), and
 * the unsupervised processor of ppo / prediction (`UnsupervisedDatasetProcessor`).
 * @module
 */
import type { AlignedExample, Message } from "./aligned.ts";
import type { ChatTemplate } from "./template.ts";
import {
  type BatchInput,
  type BatchOutput,
  describe,
  IGNORE_INDEX,
  inferSeqlen,
  type KtoRecord,
  type PairwiseRecord,
  type ResolvedDataArgs,
  type SftRecord,
} from "./process_base.ts";

const ones = (n: number) => new Array<number>(n).fill(1);
const ignore = (n: number) => new Array<number>(n).fill(IGNORE_INDEX);

/**
 * One pairwise example, LF's `_encode_data_example`: chosen and rejected share the prompt of `encode_oneturn`; with
 * `efficient_eos` both responses get eos; both are cut to the same length from `infer_seqlen(prompt, max(chosen,
 * rejected))`.
 */
export function encodePairwise(tpl: ChatTemplate, ex: AlignedExample, cutoffLen: number): PairwiseRecord {
  let [promptIds, chosenIds] = tpl.encodeOneturn([...ex.prompt, ex.response[0]], ex.system, ex.tools);
  let [, rejectedIds] = tpl.encodeOneturn([...ex.prompt, ex.response[1]], ex.system, ex.tools);
  if (tpl.spec.efficientEos) {
    chosenIds = [...chosenIds, tpl.eosId];
    rejectedIds = [...rejectedIds, tpl.eosId];
  }
  const [sourceLen, targetLen] = inferSeqlen(
    promptIds.length,
    Math.max(chosenIds.length, rejectedIds.length),
    cutoffLen,
  );
  promptIds = promptIds.slice(0, sourceLen);
  chosenIds = chosenIds.slice(0, targetLen);
  rejectedIds = rejectedIds.slice(0, targetLen);
  const chosen = [...promptIds, ...chosenIds];
  const rejected = [...promptIds, ...rejectedIds];
  return {
    chosen_input_ids: chosen,
    chosen_attention_mask: ones(chosen.length),
    chosen_labels: [...ignore(sourceLen), ...chosenIds],
    rejected_input_ids: rejected,
    rejected_attention_mask: ones(rejected.length),
    rejected_labels: [...ignore(sourceLen), ...rejectedIds],
  };
}

/** LF's `PairwiseDatasetProcessor.preprocess_dataset` on one batch (rows need an odd prompt and ≥ 2 responses). */
export function processPairwise(
  batch: BatchInput,
  tpl: ChatTemplate,
  args: ResolvedDataArgs,
): BatchOutput<PairwiseRecord> {
  const out: BatchOutput<PairwiseRecord> = { records: [], sources: [], warnings: [] };
  for (const [k, ex] of batch.examples.entries()) {
    if (ex.prompt.length % 2 !== 1 || ex.response.length < 2) {
      out.warnings.push(`Dropped invalid example: ${describe(ex)}`);
      continue;
    }
    out.records.push(encodePairwise(tpl, ex, args.cutoffLen));
    out.sources.push([batch.offset + k]);
  }
  return out;
}

/**
 * LF's KTO response list: `[answer, ""]` when desirable, `["", answer]` when not (what its converter makes of
 * `kto_tag`). Rows that already have two responses keep them.
 */
export function ktoResponses(ex: AlignedExample): Message[] {
  if (ex.response.length !== 1 || ex.ktoTag === undefined) return ex.response;
  const empty: Message = { role: "assistant", content: "" };
  return ex.ktoTag ? [ex.response[0], empty] : [empty, ex.response[0]];
}

function encodeFeedback(
  tpl: ChatTemplate,
  ex: AlignedExample,
  response: Message[],
  klResponse: Message[],
  cutoffLen: number,
): KtoRecord {
  const ktoTag = response[0].content !== "";
  const messages = [...ex.prompt, ktoTag ? response[0] : response[1]];
  const klMessages = [...ex.prompt, klResponse[0].content ? klResponse[0] : klResponse[1]];
  let [promptIds, responseIds] = tpl.encodeOneturn(messages, ex.system, ex.tools);
  let [klPromptIds, klResponseIds] = tpl.encodeOneturn(klMessages, ex.system, ex.tools);
  if (tpl.spec.efficientEos) {
    responseIds = [...responseIds, tpl.eosId];
    klResponseIds = [...klResponseIds, tpl.eosId];
  }
  const [sourceLen, targetLen] = inferSeqlen(promptIds.length, responseIds.length, cutoffLen);
  promptIds = promptIds.slice(0, sourceLen);
  responseIds = responseIds.slice(0, targetLen);
  const [klSourceLen, klTargetLen] = inferSeqlen(klPromptIds.length, klResponseIds.length, cutoffLen);
  klPromptIds = klPromptIds.slice(0, klSourceLen);
  klResponseIds = klResponseIds.slice(0, klTargetLen);
  const input = [...promptIds, ...responseIds];
  const kl = [...klPromptIds, ...klResponseIds];
  return {
    input_ids: input,
    attention_mask: ones(input.length),
    labels: [...ignore(sourceLen), ...responseIds],
    kl_input_ids: kl,
    kl_attention_mask: ones(kl.length),
    kl_labels: [...ignore(klSourceLen), ...klResponseIds],
    kto_tags: ktoTag,
  };
}

/**
 * LF's `FeedbackDatasetProcessor` on one batch. The KL example of row i pairs its prompt with the response of row
 * i - 1 of the same batch (row 0 with the batch's last row), rotated before invalid rows are skipped (LF ff6d4d12).
 * Where that partner row is itself invalid (LF would fail with an IndexError), the nearest earlier valid row of the
 * batch is used instead, as later LF versions do.
 */
export function processFeedback(
  batch: BatchInput,
  tpl: ChatTemplate,
  args: ResolvedDataArgs,
): BatchOutput<KtoRecord> {
  const out: BatchOutput<KtoRecord> = { records: [], sources: [], warnings: [] };
  const responses = batch.examples.map(ktoResponses);
  const n = responses.length;
  const valid = batch.examples.map((ex, i) => ex.prompt.length % 2 === 1 && responses[i].length >= 2);
  for (const [i, ex] of batch.examples.entries()) {
    if (!valid[i]) {
      out.warnings.push(`Dropped invalid example: ${describe(ex)}`);
      continue;
    }
    let kl = (i - 1 + n) % n;
    while (responses[kl].length < 2) kl = (kl - 1 + n) % n;
    out.records.push(encodeFeedback(tpl, ex, responses[i], responses[kl], args.cutoffLen));
    out.sources.push([batch.offset + i]);
  }
  const desirable = out.records.filter((r) => r.kto_tags).length;
  if (desirable === 0 || desirable === out.records.length) {
    out.warnings.push("Your dataset only has one preference type.");
  }
  return out;
}

/**
 * LF's `UnsupervisedDatasetProcessor` (ppo, prediction) on one batch: `input_ids` is the prompt (up to the assistant
 * header), `labels` the response ids (an empty assistant message when the row has no single response).
 */
export function processUnsupervised(
  batch: BatchInput,
  tpl: ChatTemplate,
  args: ResolvedDataArgs,
): BatchOutput<SftRecord> {
  const out: BatchOutput<SftRecord> = { records: [], sources: [], warnings: [] };
  for (const [k, ex] of batch.examples.entries()) {
    if (ex.prompt.length % 2 !== 1) {
      out.warnings.push(`Dropped invalid example: ${describe(ex)}`);
      continue;
    }
    const last: Message = ex.response.length === 1 ? ex.response[0] : { role: "assistant", content: "" };
    let [inputIds, labels] = tpl.encodeOneturn([...ex.prompt, last], ex.system, ex.tools);
    if (tpl.spec.efficientEos) labels = [...labels, tpl.eosId];
    const [sourceLen, targetLen] = inferSeqlen(inputIds.length, labels.length, args.cutoffLen);
    inputIds = inputIds.slice(0, sourceLen);
    labels = labels.slice(0, targetLen);
    out.records.push({ input_ids: inputIds, attention_mask: ones(inputIds.length), labels });
    out.sources.push([batch.offset + k]);
  }
  return out;
}
