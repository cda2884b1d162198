/**
 * The safetensors format: an 8-byte little-endian header length, a JSON header (per tensor `dtype`, `shape`,
 * `data_offsets` relative to the data section, and optional string `__metadata__`), then the raw little-endian data.
 *
 * Reading is lazy: {@linkcode openSafetensors} parses the header only, and each {@linkcode SafetensorsFile.read}
 * reads exactly one tensor's byte range with a positioned read, so a large file is never held in memory twice.
 * {@linkcode writeSafetensors} writes atomically (temp file in the same folder, fsync, rename), laid out as the
 * Python library does (header padded with spaces to 8 bytes, tensors ordered by dtype, widest first, then name).
 * @module
 */
import {
  decodeF32,
  encodeTensor,
  isDType,
  numel,
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  type TensorData,
} from "./safetensors_dtypes.ts";
import { writeAll, writeAtomic } from "../util/fs.ts";

export * from "./safetensors_dtypes.ts";

/** One tensor's header entry. `offset` is its absolute byte position in the file. */
export interface TensorInfo {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
  readonly offset: number;
}

/** An open safetensors file: its parsed header and positioned reads of single tensors. */
export interface SafetensorsFile {
  readonly path: string;
  /** Tensors by name, in header order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /** The `__metadata__` strings (empty if none). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Raw little-endian bytes of one tensor (a fresh buffer, offset 0, so typed views are aligned). */
  read(name: string): Promise<Uint8Array>;
  /** One tensor widened to f32 (f16/bf16/f8 decoded; ints and bools converted). */
  readF32(name: string): Promise<Float32Array>;
  /** Closes the file handle (further reads reopen it). */
  close(): void;
  [Symbol.dispose](): void;
}

const MAX_HEADER = 100_000_000; // the Python library's limit

/** Parses and validates a header; `dataSize` is the number of bytes after it. */
export function parseHeader(
  path: string,
  json: string,
  dataStart: number,
  dataSize: number,
): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (e) {
    throw new Error(`${path}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new Error(`${path}: safetensors header must be a JSON object, got ${JSON.stringify(json.slice(0, 40))}`);
  }
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();
  const ranges: [number, number, string][] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) {
        throw new Error(`${path}: __metadata__ must be an object of strings, got ${JSON.stringify(v)}`);
      }
      for (const [k, s] of Object.entries(v)) {
        if (typeof s !== "string") throw new Error(`${path}: __metadata__.${k} must be a string, got ${typeof s}`);
        metadata[k] = s;
      }
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `${path}: tensor ${JSON.stringify(name)}`;
    if (typeof e !== "object" || e === null) throw new Error(`${where}: expected an object, got ${JSON.stringify(v)}`);
    if (!isDType(e.dtype)) {
      throw new Error(
        `${where}: unknown dtype ${JSON.stringify(e.dtype)} (expected one of ${
          Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")
        })`,
      );
    }
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      off[0] > off[1]
    ) {
      throw new Error(`${where}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataSize) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] run past the data section of ${dataSize} bytes`);
    }
    const byteLength = numel(shape) * SAFETENSORS_DTYPE_BYTES[e.dtype];
    if (end - begin !== byteLength) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${e.dtype}[${
          shape.join(", ")
        }] needs ${byteLength}`,
      );
    }
    tensors.set(name, { dtype: e.dtype, shape: shape as number[], byteLength, offset: dataStart + begin });
    ranges.push([begin, end, name]);
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let last: [number, number, string] | undefined; // the non-empty range reaching furthest so far
  for (const r of ranges) {
    if (r[0] === r[1]) continue;
    if (last && r[0] < last[1]) {
      throw new Error(
        `${path}: data of tensors ${JSON.stringify(last[2])} [${last[0]}, ${last[1]}] and ${JSON.stringify(r[2])} ` +
          `[${r[0]}, ${r[1]}] overlap`,
      );
    }
    if (!last || r[1] > last[1]) last = r;
  }
  return { tensors, metadata };
}

async function readExactly(file: Deno.FsFile, pos: number, buf: Uint8Array, path: string): Promise<void> {
  await file.seek(pos, Deno.SeekMode.Start);
  let done = 0;
  while (done < buf.length) {
    const n = await file.read(buf.subarray(done));
    if (n === null) throw new Error(`${path}: unexpected end of file at byte ${pos + done} (file changed?)`);
    done += n;
  }
}

/** Opens a safetensors file and parses its header (the data is read lazily, tensor by tensor). */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let file: Deno.FsFile | undefined = await Deno.open(path, { read: true });
  let tensors: Map<string, TensorInfo>, metadata: Record<string, string>;
  try {
    const size = (await file.stat()).size;
    if (size < 8) throw new Error(`${path}: not a safetensors file (${size} bytes, shorter than the 8-byte header)`);
    const lenBuf = new Uint8Array(8);
    await readExactly(file, 0, lenBuf, path);
    const len = Number(new DataView(lenBuf.buffer).getBigUint64(0, true));
    if (len > size - 8) {
      throw new Error(`${path}: header length ${len} runs past the end of the file (${size} bytes)`);
    }
    if (len > MAX_HEADER) throw new Error(`${path}: header length ${len} exceeds the limit of ${MAX_HEADER}`);
    const hdr = new Uint8Array(len);
    await readExactly(file, 8, hdr, path);
    let json: string;
    try {
      json = new TextDecoder("utf-8", { fatal: true }).decode(hdr);
    } catch {
      throw new Error(`${path}: safetensors header is not valid UTF-8`);
    }
    ({ tensors, metadata } = parseHeader(path, json, 8 + len, size - 8 - len));
  } catch (e) {
    file.close();
    throw e;
  }
  // Reads share one handle; seek+read pairs are serialized so concurrent reads cannot interleave.
  let queue: Promise<unknown> = Promise.resolve();
  const info = (name: string): TensorInfo => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${path}: no tensor named ${JSON.stringify(name)} (${tensors.size} tensors in file)`);
    return t;
  };
  const read = (name: string): Promise<Uint8Array> => {
    let t: TensorInfo;
    try {
      t = info(name);
    } catch (e) {
      return Promise.reject(e);
    }
    const job = queue.then(async () => {
      file ??= await Deno.open(path, { read: true });
      const buf = new Uint8Array(t.byteLength);
      await readExactly(file, t.offset, buf, path);
      return buf;
    });
    queue = job.catch(() => {});
    return job;
  };
  const close = () => {
    file?.close();
    file = undefined;
  };
  return {
    path,
    tensors,
    metadata,
    read,
    async readF32(name: string) {
      const t = info(name);
      return decodeF32(t.dtype, await read(name));
    },
    close,
    [Symbol.dispose]: close,
  };
}

// The Python library's order (its Rust `Dtype` enum): tensors are written by rank descending, then name, which
// keeps every tensor aligned to its element size.
const RANK: Record<SafetensorsDType, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  F8_E5M2: 3,
  F8_E4M3: 4,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
  U64: 14,
};

/** One tensor of a file written by {@link writeSafetensorsStream}: its header entry, its bytes made on demand. */
export interface TensorSpec {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
}

/**
 * The header bytes (padded with spaces to 8) and the write order of tensors as the Python library lays them out
 * (by dtype, widest first, then name), with each tensor's byte length.
 */
function layout(
  path: string,
  specs: Record<string, TensorSpec>,
  metadata?: Record<string, string>,
): { header: Uint8Array; names: string[]; sizes: number[] } {
  const names = Object.keys(specs).filter((n) => n !== "__metadata__");
  if (names.length !== Object.keys(specs).length) throw new Error(`${path}: "__metadata__" is not a tensor name`);
  for (const n of names) {
    if (!isDType(specs[n].dtype)) throw new Error(`tensor ${JSON.stringify(n)}: unknown dtype ${specs[n].dtype}`);
  }
  names.sort((a, b) => RANK[specs[b].dtype] - RANK[specs[a].dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const sizes = names.map((n) => numel(specs[n].shape) * SAFETENSORS_DTYPE_BYTES[specs[n].dtype]);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new Error(`${path}: metadata ${k} must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let pos = 0;
  names.forEach((n, i) => {
    header[n] = { dtype: specs[n].dtype, shape: [...specs[n].shape], data_offsets: [pos, pos + sizes[i]] };
    pos += sizes[i];
  });
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return { header: out, names, sizes };
}

/**
 * Writes tensors (and optional string metadata) to `path` atomically: a temp file in the same folder is written,
 * fsynced and renamed over `path`. Tensors are laid out as the Python library lays them out
 * (by dtype, widest first, then name), so the same tensors and metadata give the same bytes.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorData>,
  metadata?: Record<string, string>,
): Promise<void> {
  if (Object.hasOwn(tensors, "__metadata__")) throw new Error(`${path}: "__metadata__" is not a tensor name`);
  const encoded = new Map(Object.entries(tensors).map(([n, t]) => [n, encodeTensor(n, t)]));
  await writeSafetensorsStream(path, tensors, (name) => encoded.get(name)!, metadata);
}

/**
 * Writes a safetensors file tensor by tensor, with the layout of {@link writeSafetensors} (the same specs and bytes
 * give the same file), atomically. `bytes(name)` makes one tensor's raw little-endian bytes when its turn comes, so
 * only one tensor is in memory at a time: how a model larger than memory is written.
 */
export async function writeSafetensorsStream(
  path: string,
  specs: Record<string, TensorSpec>,
  bytes: (name: string) => Uint8Array | Promise<Uint8Array>,
  metadata?: Record<string, string>,
): Promise<void> {
  const { header, names, sizes } = layout(path, specs, metadata);
  await writeAtomic(path, async (file) => {
    await writeAll(file, header);
    for (let i = 0; i < names.length; i++) {
      const data = await bytes(names[i]);
      if (data.byteLength !== sizes[i]) {
        const s = specs[names[i]];
        throw new Error(
          `${path}: tensor ${JSON.stringify(names[i])} came with ${data.byteLength} bytes, ${s.dtype}[${
            s.shape.join(", ")
          }] needs ${sizes[i]}`,
        );
      }
      await writeAll(file, data);
    }
  });
}
