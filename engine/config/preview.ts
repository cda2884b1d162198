/**
 * A dataset preview from training arguments: the first examples of `dataset` as the stage would train on them
 * (normalized messages, then the tokenized sequences as spans of trained and masked tokens), read with the
 * arguments' model tokenizer and template, without loading the model's weights.
 * @module
 */
import { loadDatasets } from "../data/loader.ts";
import { previewDataset, type PreviewRow } from "../data/preview.ts";
import { getTemplate } from "../data/template.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { resolveModel } from "../io/hub.ts";
import type { TrainArgs } from "./train_args.ts";
import { dataArgsOf, hubOptionsOf, loadDatasetsArgsOf, templateOptionsOf } from "./views.ts";

/** What {@link previewTrainData} shows. */
export interface TrainDataPreview {
  /** The rows (at most `n`, from the head of the training split, no evaluation split taken). */
  rows: PreviewRow[];
  /** What loading the data noticed (unknown columns, dropped rows, ...). */
  warnings: string[];
}

/**
 * The first `n` training examples of `a.dataset`, processed as stage `a.stage` would (packing off, so each
 * example shows on its own).
 *
 * @example
 * ```ts
 * import { parseTrainArgs, previewTrainData } from "../mod.ts";
 * const args = parseTrainArgs({
 *   model_name_or_path: "fixtures/tiny/model",
 *   dataset: "whetstone_demo",
 *   dataset_dir: "fixtures/demo",
 *   template: "qwen",
 *   cutoff_len: 64,
 * });
 * const { rows } = await previewTrainData(args, 2);
 * if (rows.length !== 2 || !rows[0].views[0].spans.some((s) => s.trained)) throw new Error("no trained span");
 * ```
 */
export async function previewTrainData(a: TrainArgs, n: number): Promise<TrainDataPreview> {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n: expected an integer >= 1, got ${n}`);
  const dir = await resolveModel(a.model_name_or_path, hubOptionsOf(a));
  const template = getTemplate(await loadTokenizer(dir), templateOptionsOf(a));
  const loaded = await loadDatasets({
    ...loadDatasetsArgsOf(a),
    max_samples: Math.min(a.max_samples ?? n, n),
    val_size: 0,
    eval_dataset: undefined,
    streaming: false,
  });
  const rows = previewDataset(loaded.train, template.tokenizer.base, template, n, dataArgsOf(a));
  return { rows, warnings: loaded.warnings };
}
