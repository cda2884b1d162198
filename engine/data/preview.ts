/**
 * Dataset preview for a UI: the first N examples as normalized messages and as tokenized views, each a list of spans
 * `{text, ids, trained}` so that masked (prompt, history, padding) and trained tokens can be marked.
 *
 * @example
 * ```ts
 * import { loadDatasets } from "./loader.ts";
 * import { previewDataset } from "./preview.ts";
 * import { loadTokenizer } from "./tokenizer.ts";
 * const tokenizer = await loadTokenizer("fixtures/tiny/model");
 * const { train } = await loadDatasets({ dataset: "whetstone_demo", dataset_dir: "fixtures/demo", max_samples: 5 });
 * const rows = previewDataset(train, tokenizer, "qwen", 5, { cutoffLen: 1024 });
 * for (const s of rows[0].views[0].spans) console.log(s.trained ? "+" : "-", JSON.stringify(s.text));
 * ```
 * @module
 */
import type { AlignedExample, Message } from "./aligned.ts";
import {
  type DataArgs,
  IGNORE_INDEX,
  type KtoRecord,
  type PairwiseRecord,
  processDataset,
  type SftRecord,
} from "./process.ts";
import { type ChatTemplate, getTemplate, type TemplateOptions } from "./template.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** A run of tokens that are all trained or all masked. */
export interface PreviewSpan {
  text: string;
  ids: number[];
  trained: boolean;
}

/** One tokenized sequence of an example. */
export interface PreviewView {
  /** `input` (sft, pt, kto), `chosen` / `rejected` (rm, dpo), `kl` (kto's mismatched pair). */
  name: "input" | "chosen" | "rejected" | "kl";
  spans: PreviewSpan[];
  length: number;
  trainedTokens: number;
}

/** One previewed example. */
export interface PreviewRow {
  index: number;
  source: AlignedExample["source"];
  system: string;
  tools: string;
  /** The conversation: prompt then response messages. */
  messages: Message[];
  ktoTag?: boolean;
  views: PreviewView[];
  /** Why the example would be dropped (no views then). */
  dropped?: string;
}

/** Options of {@link previewDataset}: the data arguments (default stage `sft`) and template options. */
export type PreviewOptions = Partial<DataArgs> & Omit<TemplateOptions, "template">;

/** Splits a sequence into runs by whether each position has a label. */
export function spansOf(tpl: ChatTemplate, ids: readonly number[], labels: readonly number[]): PreviewSpan[] {
  const spans: PreviewSpan[] = [];
  let start = 0;
  for (let i = 1; i <= ids.length; i++) {
    if (i === ids.length || (labels[i] !== IGNORE_INDEX) !== (labels[start] !== IGNORE_INDEX)) {
      const run = ids.slice(start, i);
      spans.push({ text: tpl.tokenizer.decode(run), ids: run, trained: labels[start] !== IGNORE_INDEX });
      start = i;
    }
  }
  return spans;
}

function view(tpl: ChatTemplate, name: PreviewView["name"], ids: number[], labels: number[]): PreviewView {
  return {
    name,
    spans: spansOf(tpl, ids, labels),
    length: ids.length,
    trainedTokens: labels.filter((l) => l !== IGNORE_INDEX).length,
  };
}

/**
 * The first `n` examples, normalized and tokenized as the stage would train on them. `template` is a registered
 * name, null for the tokenizer's own chat template, or a template already made with {@link getTemplate}. Packing is
 * turned off so each example is shown on its own; KTO's KL pairs come from the first `n` rows processed together.
 */
export function previewDataset(
  examples: readonly AlignedExample[],
  tokenizer: Tokenizer,
  template: string | null | ChatTemplate,
  n: number,
  opts: PreviewOptions = {},
): PreviewRow[] {
  const tpl = typeof template === "object" && template !== null
    ? template
    : getTemplate(tokenizer, { ...opts, template, trainOnPrompt: opts.trainOnPrompt });
  const head = examples.slice(0, Math.max(0, n));
  const stage = opts.stage ?? "sft";
  const result = processDataset(head, tpl, { ...opts, stage, packing: false, neatPacking: false });
  const rows: PreviewRow[] = head.map((ex, index) => ({
    index,
    source: ex.source,
    system: ex.system,
    tools: ex.tools,
    messages: [...ex.prompt, ...ex.response],
    ...(ex.ktoTag === undefined ? {} : { ktoTag: ex.ktoTag }),
    views: [],
  }));
  for (const [k, rec] of result.records.entries()) {
    const row = rows[result.sources[k][0]];
    if ("chosen_input_ids" in rec) {
      const r = rec as PairwiseRecord;
      row.views.push(view(tpl, "chosen", r.chosen_input_ids, r.chosen_labels));
      row.views.push(view(tpl, "rejected", r.rejected_input_ids, r.rejected_labels));
    } else if ("kl_input_ids" in rec) {
      const r = rec as KtoRecord;
      row.views.push(view(tpl, "input", r.input_ids, r.labels));
      row.views.push(view(tpl, "kl", r.kl_input_ids, r.kl_labels));
    } else {
      const r = rec as SftRecord;
      row.views.push(view(tpl, "input", r.input_ids, r.labels));
    }
  }
  for (const row of rows) {
    if (row.views.length === 0) {
      row.dropped = stage === "pt"
        ? "no text"
        : `invalid example: ${
          stage === "sft"
            ? "expected an odd number of prompt messages and one response"
            : "expected an odd number of prompt messages and two responses"
        }`;
    }
  }
  return rows;
}
