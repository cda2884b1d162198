/**
 * Stage processing as LLaMA-Factory does it (`data/processor/*.py`): aligned examples → token-id records with LF's
 * field names, in dataset order. One entry point, {@link processDataset}; the stages live in `process_sft.ts`
 * (supervised, packed), `process_pref.ts` (pairwise, KTO, unsupervised) and `process_pt.ts` (pre-training), the
 * batch collators in `process_collate.ts`.
 *
 * Like LF's `dataset.map(batched=True, batch_size=preprocessing_batch_size)`, rows are processed in batches of
 * {@link DataArgs.batchSize} (1000): packing, the pre-training block cut and KTO's KL pairing happen per batch.
 *
 * @example
 * ```ts
 * const tpl = getTemplate(tok, { template: "qwen3_nothink" });
 * const { records } = processDataset(examples, tpl, { stage: "sft", cutoffLen: 1024 });
 * ```
 * @module
 */
import type { AlignedExample } from "./aligned.ts";
import type { ChatTemplate } from "./template.ts";
import { processPackedSupervised, processSupervised } from "./process_sft.ts";
import { processFeedback, processPairwise, processUnsupervised } from "./process_pref.ts";
import { processPretrain } from "./process_pt.ts";
import {
  type BatchInput,
  type BatchOutput,
  type DataArgs,
  type ProcessedRecord,
  type ProcessResult,
  resolveDataArgs,
} from "./process_base.ts";

export * from "./process_base.ts";

/** Processes aligned examples for a stage with a template, batch by batch, in dataset order. */
export function processDataset(
  examples: readonly AlignedExample[],
  template: ChatTemplate,
  dataArgs: DataArgs,
): ProcessResult {
  const args = resolveDataArgs(dataArgs);
  const out: ProcessResult = { records: [], sources: [], warnings: [], args };
  for (let offset = 0; offset < examples.length; offset += args.batchSize) {
    const batch: BatchInput = { examples: examples.slice(offset, offset + args.batchSize), offset };
    let r: BatchOutput<ProcessedRecord>;
    switch (args.stage) {
      case "pt":
        r = processPretrain(batch, template, args);
        break;
      case "sft":
        r = args.packing ? processPackedSupervised(batch, template, args) : processSupervised(batch, template, args);
        break;
      case "rm":
      case "dpo":
        r = processPairwise(batch, template, args);
        break;
      case "kto":
        r = processFeedback(batch, template, args);
        break;
      case "ppo":
        r = processUnsupervised(batch, template, args);
        break;
    }
    out.records.push(...r.records);
    out.sources.push(...r.sources);
    out.warnings.push(...r.warnings);
  }
  return out;
}
