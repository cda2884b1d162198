/**
 * Converters from dataset rows to {@linkcode AlignedExample}, following LLaMA-Factory's `data/converter.py`
 * (`AlpacaDatasetConverter`, `SharegptDatasetConverter`, `OpenAIDatasetConverter`):
 *
 * - **alpaca**: the user turn is `instruction` and `input` joined by "\n" (empty parts skipped); `history` pairs become
 *   earlier user/assistant turns; `system` and `tools` columns; `ranking` with string `chosen`/`rejected`; a boolean
 *   `kto_tag`. A non-string `output` leaves the response empty (LF's "unsupervised" row).
 * - **sharegpt**: a leading `system_tag` message becomes the system prompt; roles must alternate (user/observation at
 *   even positions, assistant/function at odd ones) and the count must be even (odd with `ranking`), else the row is
 *   "broken" and dropped with a reason (LF keeps it empty and drops it later). The last message is the response.
 * - **openai**: sharegpt with `tool_calls` turned into a function message, consecutive tool results merged, and LF's
 *   "detailed thinking off" system quirk.
 *
 * KTO: where LF writes the response as `[answer, ""]` (desirable) or `["", answer]`, the aligned example has
 * `response: [answer]` and `ktoTag: true | false`.
 *
 * Stricter than LF, on purpose: a row without the key of a column the stage needs (e.g. `instruction`, or `output` for
 * sft) and a value of the wrong type (a number where a string goes, a message without its content) are
 * {@linkcode DataError}s naming file, row and field, instead of rows silently dropped or a crash later.
 * @module
 */
import type { AlignedExample, Message } from "./aligned.ts";
import type { DatasetAttr } from "./dataset_info.ts";
import type { FileRow } from "./files.ts";
import { openai, sharegpt } from "./formats_messages.ts";
import { type Converted, needs, RowReader, source, type Stage, typeName } from "./formats_row.ts";

export { type Converted, pyJsonDumps, type Stage, STAGES } from "./formats_row.ts";

/** Converts one row with the dataset's formatting. Throws {@linkcode DataError} for missing fields and wrong types. */
export function convertRow(attr: DatasetAttr, row: FileRow, stage: Stage): Converted {
  const r = new RowReader(attr, row);
  switch (attr.formatting) {
    case "alpaca":
      return alpaca(r, stage);
    case "sharegpt":
      return sharegpt(r, stage);
    case "openai":
      return openai(r, stage);
  }
}

function alpaca(r: RowReader, stage: Stage): Converted {
  const need = needs(stage);
  const prompt: Message[] = [];
  const history = r.value("history");
  if (Array.isArray(history)) {
    history.forEach((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") {
        const col = r.attr.columns.history!;
        throw r.error(
          `${col}[${i}] should be a [prompt, response] pair of strings, got ${JSON.stringify(pair)?.slice(0, 80)}`,
          col,
        );
      }
      prompt.push({ role: "user", content: pair[0] }, { role: "assistant", content: pair[1] });
    });
  } else if (history !== undefined && history !== null) {
    const col = r.attr.columns.history!;
    throw r.error(
      `column ${JSON.stringify(col)} (columns.history) should be a list of pairs, got ${typeName(history)}`,
      col,
    );
  }
  const query = [r.string("prompt", true), r.string("query")].filter((s) => s); // LF: only non-empty parts
  prompt.push({ role: "user", content: query.join("\n") });

  const output = r.string("response", need.response);
  const kto = r.ktoTag(need.kto);
  let response: Message[] = [];
  let ktoTag: boolean | undefined;
  if (kto !== undefined) {
    ktoTag = kto;
    if (output !== undefined) response = [{ role: "assistant", content: output }];
  } else {
    const chosen = r.attr.ranking ? r.string("chosen", need.pair) : undefined;
    const rejected = r.attr.ranking ? r.string("rejected", need.pair) : undefined;
    if (chosen !== undefined && rejected !== undefined) {
      response = [{ role: "assistant", content: chosen }, { role: "assistant", content: rejected }];
    } else if (output !== undefined) {
      response = [{ role: "assistant", content: output }];
    }
  }
  const example: AlignedExample = {
    prompt,
    response,
    system: r.string("system") ?? "",
    tools: r.tools(),
    source: source(r),
  };
  if (ktoTag !== undefined) example.ktoTag = ktoTag;
  return { example };
}

/**
 * Why an aligned example cannot train `stage` (LF's processors drop such rows as "Dropped invalid example"), or
 * undefined when it can: pt needs a prompt; sft an odd prompt and one response; rm/dpo an odd prompt and two
 * responses; kto an odd prompt, one response and a kto tag; ppo an odd prompt. As in LF, sft drops KTO examples.
 */
export function stageProblem(ex: AlignedExample, stage: Stage): string | undefined {
  if (stage === "pt") return ex.prompt.length === 0 ? "empty prompt" : undefined;
  if (ex.prompt.length % 2 !== 1) return `the prompt has ${ex.prompt.length} messages, expected an odd number`;
  switch (stage) {
    case "sft":
      if (ex.ktoTag !== undefined) {
        return "a KTO example (its kto_tag is set): LF gives it two responses, which sft drops (use stage kto)";
      }
      return ex.response.length === 1
        ? undefined
        : "no response (the response column is missing, null or not a string)";
    case "rm":
    case "dpo":
      return ex.response.length === 2 ? undefined : "no chosen/rejected pair (null or missing)";
    case "kto":
      if (ex.ktoTag === undefined) return "no kto tag (null)";
      return ex.response.length === 1 ? undefined : "no response (null or missing)";
    case "ppo":
      return undefined;
  }
}

/** Why a dataset cannot be used for `stage` at all (checked before reading it), or undefined. */
export function datasetProblem(attr: DatasetAttr, stage: Stage): string | undefined {
  const c = attr.columns;
  const media = (["images", "videos", "audios"] as const).filter((k) => c[k] !== undefined);
  if (media.length) {
    return `it has ${media.map((k) => `${k} column ${JSON.stringify(c[k])}`).join(" and ")}: multimodal datasets ` +
      `are not supported (only text)`;
  }
  const pairStage = stage === "rm" || stage === "dpo";
  if (pairStage && !attr.ranking) {
    return `stage ${stage} needs a preference dataset ("ranking": true in dataset_info.json)`;
  }
  if (!pairStage && attr.ranking) {
    return `it is a preference dataset ("ranking": true), which only stages rm and dpo use, not ${stage}`;
  }
  if (pairStage && (c.chosen === undefined || c.rejected === undefined)) {
    return `a preference dataset needs columns.chosen and columns.rejected`;
  }
  if (stage === "kto" && c.kto_tag === undefined) return `stage kto needs a kto_tag column (columns.kto_tag)`;
  if (attr.formatting === "alpaca") {
    if (c.prompt === undefined && c.query === undefined) return `an alpaca dataset needs columns.prompt`;
    if ((stage === "sft" || stage === "kto") && c.response === undefined) {
      return `stage ${stage} needs responses, and this alpaca dataset has no response column (columns: ${
        JSON.stringify(c)
      })`;
    }
  } else if (c.messages === undefined) {
    return `formatting ${attr.formatting} needs columns.messages`;
  }
  return undefined;
}
