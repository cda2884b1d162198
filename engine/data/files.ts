/**
 * Readers for the data files LLaMA-Factory accepts (`FILEEXT2TYPE`): `.json` / `.jsonl` (one loader, as in HF
 * datasets: a JSON array of objects, an object of equal-length columns, or JSON lines), `.csv`, `.parquet` and `.txt`
 * (one row `{ text }` per line, empty lines included, as HF's `text` builder does), and folders of such files.
 *
 * Every reader is an async generator of {@linkcode FileRow}: `.jsonl` and `.txt` files are read line by line without
 * loading the whole file, `.parquet` one row group at a time, `.json` arrays and `.csv` whole. Errors are
 * {@linkcode DataError}s naming the file and the line or row.
 * @module
 */
import { parquetCompressors, parquetMetadataAsync, parquetReadObjects, parseCsv } from "../../deps.ts";
import type { ParquetAsyncBuffer } from "../../deps.ts";
import { jsonErrorPosition, v8Message } from "./files_json.ts";

/** A row of a data file: its column values as read. */
export type Row = Record<string, unknown>;

/** One row and where it is. */
export interface FileRow {
  file: string;
  /** 1-based position of the row in its file. */
  row: number;
  /** 1-based line, for line-based files (`.jsonl`, `.txt`). */
  line?: number;
  data: Row;
}

/** Where a data problem is: the parts known are named in the message. */
export interface DataErrorLocation {
  dataset?: string;
  file?: string;
  row?: number;
  line?: number;
  field?: string;
}

/** A problem in the data, located by dataset, file, line or row, and field. */
export class DataError extends Error {
  readonly location: DataErrorLocation;
  constructor(message: string, location: DataErrorLocation = {}) {
    super(`${formatLocation(location)}${message}`);
    this.name = "DataError";
    this.location = location;
  }
}

/** `"x.json row 17 (dataset \"foo\"): "` or `"x.jsonl:17: "` from the parts that are known. */
export function formatLocation(loc: DataErrorLocation): string {
  let s = loc.file ?? "";
  if (loc.line !== undefined) s += loc.file ? `:${loc.line}` : `line ${loc.line}`;
  else if (loc.row !== undefined) s += `${s ? " " : ""}row ${loc.row}`;
  if (loc.dataset) s += `${s ? " " : ""}(dataset ${JSON.stringify(loc.dataset)})`;
  return s ? `${s}: ` : "";
}

/** File types by extension, as LLaMA-Factory's `FILEEXT2TYPE` (`arrow` is recognised but not supported). */
export const FILE_TYPES: Readonly<Record<string, "json" | "csv" | "parquet" | "text" | "arrow">> = {
  arrow: "arrow",
  csv: "csv",
  json: "json",
  jsonl: "json",
  parquet: "parquet",
  txt: "text",
};

/** The loader type of a file name (`"json"` for .json and .jsonl), or undefined for other extensions. */
export function fileType(path: string): "json" | "csv" | "parquet" | "text" | "arrow" | undefined {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const dot = name.lastIndexOf(".");
  return dot > 0 ? FILE_TYPES[name.slice(dot + 1).toLowerCase()] : undefined;
}

const ALLOWED = Object.keys(FILE_TYPES).filter((e) => e !== "arrow").map((e) => `.${e}`).join(", ");

/**
 * The data files of a path: the file itself, or every file of a folder (sorted, dot files skipped), which must all
 * have one type (.json and .jsonl count as one), as LLaMA-Factory requires.
 */
export async function listDataFiles(path: string): Promise<string[]> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DataError(`file or folder not found: ${path}`);
    throw e;
  }
  let files: string[];
  if (stat.isDirectory) {
    files = [];
    for await (const e of Deno.readDir(path)) {
      if (e.isFile && !e.name.startsWith(".")) files.push(`${path.replace(/\/+$/, "")}/${e.name}`);
    }
    files.sort();
    if (files.length === 0) throw new DataError(`folder ${path} has no data files (expected ${ALLOWED} files)`);
  } else {
    files = [path];
  }
  const types = files.map(fileType);
  for (let i = 0; i < files.length; i++) {
    const t = types[i];
    if (t === undefined) throw new DataError(`unsupported file type: ${files[i]} (expected ${ALLOWED})`);
    if (t === "arrow") {
      throw new DataError(`Arrow files are not supported: ${files[i]} (convert it to .parquet or .jsonl)`);
    }
    if (t !== types[0]) {
      throw new DataError(
        `the files of folder ${path} must all have one type; ${files[0]} is ${types[0]} but ${files[i]} is ${t}`,
      );
    }
  }
  return files;
}

/** Reads the rows of one data file (see the module doc for the formats). */
export function readDataFile(path: string): AsyncGenerator<FileRow> {
  switch (fileType(path)) {
    case "json":
      return readJson(path);
    case "csv":
      return readCsv(path);
    case "parquet":
      return readParquet(path);
    case "text":
      return readText(path);
    default:
      throw new DataError(`unsupported file type: ${path} (expected ${ALLOWED})`);
  }
}

/** Reads every row of every file of `path` (a file or a folder; see {@linkcode listDataFiles}). */
export async function* readDataPath(path: string): AsyncGenerator<FileRow> {
  for (const f of await listDataFiles(path)) yield* readDataFile(f);
}

/** The lines of a text file, read in chunks: `\n` or `\r\n` ends a line; a final newline adds no empty line. */
export async function* readLines(path: string): AsyncGenerator<{ text: string; line: number }> {
  const file = await Deno.open(path);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let carry = "", line = 0, first = true;
  try {
    for await (const chunk of file.readable) {
      let text: string;
      try {
        text = carry + decoder.decode(chunk, { stream: true });
      } catch {
        throw new DataError(`not valid UTF-8 text (after line ${line})`, { file: path });
      }
      if (first && text.length > 0) {
        if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
        first = false;
      }
      let start = 0;
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", start)) {
        const end = nl > start && text.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
        yield { text: text.slice(start, end), line: ++line };
        start = nl + 1;
      }
      carry = text.slice(start);
    }
    carry += decoder.decode();
    if (carry.length > 0) yield { text: carry.endsWith("\r") ? carry.slice(0, -1) : carry, line: ++line };
  } finally {
    try {
      file.close();
    } catch {
      // already closed by the readable stream
    }
  }
}

function typeName(v: unknown): string {
  return v === null ? "null" : Array.isArray(v) ? "array" : typeof v;
}

function isObject(v: unknown): v is Row {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A .json or .jsonl file: a JSON array of objects, an object whose values are equal-length column arrays, or JSON
 * lines (one object a line, blank lines skipped). JSON lines are streamed; the other two forms are read whole.
 */
async function* readJson(path: string): AsyncGenerator<FileRow> {
  const head = await firstChar(path);
  if (head === "[" || (head === "{" && !path.endsWith(".jsonl") && await isWholeJsonObject(path))) {
    yield* readJsonWhole(path);
    return;
  }
  let row = 0;
  for await (const { text, line } of readLines(path)) {
    if (text.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      const col = jsonErrorPosition(text) + 1;
      throw new DataError(`invalid JSON at column ${col}: ${v8Message(e)}`, { file: path, line });
    }
    if (!isObject(value)) {
      throw new DataError(`expected a JSON object on each line, got ${typeName(value)}`, { file: path, line });
    }
    yield { file: path, row: ++row, line, data: value };
  }
}

async function firstChar(path: string): Promise<string> {
  const file = await Deno.open(path);
  try {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) return "";
      const s = new TextDecoder().decode(buf.subarray(0, n)).replace(/^\uFEFF/, "").trimStart();
      if (s.length > 0) return s[0];
    }
  } finally {
    file.close();
  }
}

/** Whether a file starting with `{` is one JSON object (columns) rather than JSON lines. */
async function isWholeJsonObject(path: string): Promise<boolean> {
  for await (const { text } of readLines(path)) {
    if (text.trim() === "") continue;
    try {
      JSON.parse(text);
      return false; // the first line is a whole value: JSON lines
    } catch {
      return true;
    }
  }
  return false;
}

async function* readJsonWhole(path: string): AsyncGenerator<FileRow> {
  const text = (await Deno.readTextFile(path)).replace(/^\uFEFF/, "");
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const pos = jsonErrorPosition(text);
    const before = text.slice(0, pos);
    const line = before.split("\n").length;
    const col = pos - before.lastIndexOf("\n");
    throw new DataError(`invalid JSON at column ${col}: ${v8Message(e)}`, { file: path, line });
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!isObject(value[i])) {
        throw new DataError(`expected an array of objects, got ${typeName(value[i])}`, { file: path, row: i + 1 });
      }
      yield { file: path, row: i + 1, data: value[i] };
    }
    return;
  }
  if (isObject(value)) {
    const cols = Object.entries(value);
    const n = cols.length ? (Array.isArray(cols[0][1]) ? (cols[0][1] as unknown[]).length : -1) : 0;
    const bad = cols.find(([, v]) => !Array.isArray(v) || v.length !== n);
    if (bad) {
      throw new DataError(
        `expected a JSON array of objects, JSON lines, or an object of equal-length column arrays; ` +
          `column ${JSON.stringify(bad[0])} is ${
            Array.isArray(bad[1]) ? `${bad[1].length} long, not ${n}` : typeName(bad[1])
          }`,
        { file: path },
      );
    }
    for (let i = 0; i < n; i++) {
      yield { file: path, row: i + 1, data: Object.fromEntries(cols.map(([k, v]) => [k, (v as unknown[])[i]])) };
    }
    return;
  }
  throw new DataError(`expected a JSON array of objects or JSON lines, got ${typeName(value)}`, { file: path });
}

/**
 * A CSV file with a header row, read whole with csv-parse. Every cell is a string (an empty cell is ""); the
 * converters read `true`/`false` cells of a `kto_tag` column as booleans.
 */
async function* readCsv(path: string): AsyncGenerator<FileRow> {
  const text = await Deno.readTextFile(path);
  let records: Row[];
  try {
    records = parseCsv(text, { columns: true, bom: true, skip_empty_lines: true }) as Row[];
  } catch (e) {
    const line = (e as { lines?: number }).lines;
    throw new DataError(`invalid CSV: ${(e as Error).message}`, { file: path, line });
  }
  for (let i = 0; i < records.length; i++) yield { file: path, row: i + 1, data: records[i] };
}

/** Reads a parquet file through hyparquet, one row group at a time (the file is read by ranges, not whole). */
async function* readParquet(path: string): AsyncGenerator<FileRow> {
  const file = await Deno.open(path);
  try {
    const size = (await file.stat()).size;
    let queue: Promise<unknown> = Promise.resolve();
    const buffer: ParquetAsyncBuffer = {
      byteLength: size,
      slice(start: number, end = size): Promise<ArrayBuffer> {
        const job = queue.then(async () => {
          const out = new Uint8Array(Math.max(0, end - start));
          await file.seek(start, Deno.SeekMode.Start);
          for (let off = 0; off < out.length;) {
            const n = await file.read(out.subarray(off));
            if (n === null) throw new Error(`unexpected end of file at byte ${start + off}`);
            off += n;
          }
          return out.buffer;
        });
        queue = job.catch(() => {});
        return job;
      },
    };
    let metadata;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (e) {
      throw new DataError(`not a valid parquet file: ${(e as Error).message}`, { file: path });
    }
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      let rows: Row[];
      try {
        rows = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, compressors: parquetCompressors });
      } catch (e) {
        throw new DataError(`cannot read rows ${rowStart + 1}-${rowEnd}: ${(e as Error).message}`, { file: path });
      }
      for (let i = 0; i < rows.length; i++) {
        yield { file: path, row: rowStart + i + 1, data: plain(rows[i]) as Row };
      }
      rowStart = rowEnd;
    }
  } finally {
    file.close();
  }
}

/** Parquet values as JSON-like values: 64-bit integers become numbers (strings when not exactly representable). */
function plain(v: unknown): unknown {
  if (typeof v === "bigint") {
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  }
  if (Array.isArray(v)) return v.map(plain);
  if (isObject(v) && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Row = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

/** A text file: one row `{ text }` per line, empty lines included (HF datasets' `text` builder). */
async function* readText(path: string): AsyncGenerator<FileRow> {
  for await (const { text, line } of readLines(path)) yield { file: path, row: line, line, data: { text } };
}
