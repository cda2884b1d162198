/**
 * Shared pieces of the converters: stages, the converted-row type and {@linkcode RowReader}, which reads a row's
 * columns with errors naming file, row and field.
 * @module
 */
import type { AlignedExample } from "./aligned.ts";
import type { DatasetAttr, DatasetColumns } from "./dataset_info.ts";
import { DataError, type FileRow } from "./files.ts";

/** Training stages, as LLaMA-Factory names them (`rm` and `dpo` read preference data). */
export type Stage = "pt" | "sft" | "rm" | "dpo" | "kto" | "ppo";

/** Every stage. */
export const STAGES: readonly Stage[] = ["pt", "sft", "rm", "dpo", "kto", "ppo"];

/** A converted row, or the reason it was dropped (LF's "Skipping this abnormal example"). */
export type Converted = { example: AlignedExample; dropped?: undefined } | { example?: undefined; dropped: string };

/** Python's `json.dumps(value, ensure_ascii=False)`: `", "` and `": "` separators. */
export function pyJsonDumps(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyJsonDumps(v)}`).join(", ")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** A value's JSON type name for messages: "null", "array", "string", ... */
export function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

/** Reads the row's fields with errors that name file, row and field. */
export class RowReader {
  constructor(readonly attr: DatasetAttr, readonly row: FileRow) {}

  error(message: string, field?: string): DataError {
    const { file, row, line } = this.row;
    return new DataError(message, { dataset: this.attr.name, file, row, line, field });
  }

  /** The value of column `key`, `undefined` when the dataset has no such column or the row lacks it. */
  value(key: keyof DatasetColumns, required = false): unknown {
    const col = this.attr.columns[key];
    if (col === undefined) return undefined;
    if (!Object.hasOwn(this.row.data, col)) {
      if (required) {
        const keys = Object.keys(this.row.data);
        throw this.error(
          `missing column ${JSON.stringify(col)} (columns.${key}); the row has ${
            keys.length ? `columns ${keys.map((k) => JSON.stringify(k)).join(", ")}` : "no columns"
          }`,
          col,
        );
      }
      return undefined;
    }
    return this.row.data[col];
  }

  /** A string column; null/absent is `undefined`; another type is an error. */
  string(key: keyof DatasetColumns, required = false): string | undefined {
    const v = this.value(key, required);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") {
      const col = this.attr.columns[key]!;
      throw this.error(`column ${JSON.stringify(col)} (columns.${key}) should be a string, got ${typeName(v)}`, col);
    }
    return v;
  }

  /** The `tools` column as JSON text ("" when absent; arrays and objects are serialised as LF's openai converter). */
  tools(): string {
    const v = this.value("tools");
    if (v === undefined || v === null) return "";
    if (typeof v === "string") return v;
    if (typeof v === "object") return pyJsonDumps(v);
    const col = this.attr.columns.tools!;
    throw this.error(
      `column ${JSON.stringify(col)} (columns.tools) should be a JSON string of tools, got ${typeName(v)}`,
      col,
    );
  }

  /** The `kto_tag` column: a boolean, or undefined (null/absent). CSV cells "true"/"false" count as booleans. */
  ktoTag(required: boolean): boolean | undefined {
    const v = this.value("kto_tag", required);
    if (v === undefined || v === null) return undefined;
    if (typeof v === "boolean") return v;
    if (typeof v === "string" && /\.csv$/i.test(this.row.file)) {
      const s = v.trim().toLowerCase();
      if (s === "true" || s === "false") return s === "true";
      if (s === "") return undefined;
    }
    const col = this.attr.columns.kto_tag!;
    throw this.error(
      `column ${JSON.stringify(col)} (columns.kto_tag) should be true or false, got ${JSON.stringify(v)}`,
      col,
    );
  }
}

/** What a stage needs from each row (used to decide which missing keys are errors). */
export function needs(stage: Stage) {
  return {
    response: stage === "sft" || stage === "kto",
    pair: stage === "rm" || stage === "dpo",
    kto: stage === "kto",
  };
}

/** Where an example came from. */
export function source(r: RowReader): AlignedExample["source"] {
  return { dataset: r.attr.name, file: r.row.file, row: r.row.row };
}
