/**
 * `report_to: tensorboard`: TensorBoard event files, as transformers' `TensorBoardCallback` writes them through
 * torch's `SummaryWriter`. A file `events.out.tfevents.<seconds>.<host>.<pid>.0` is a sequence of TFRecords
 * (uint64 length, masked CRC-32C of the length, the bytes, masked CRC-32C of the bytes; tensorflow/core/lib/io/
 * record_writer.cc), each an `Event` protocol buffer (tensorboard/compat/proto/event.proto): the first holds
 * `file_version: "brain.Event:2"`, the others a `Summary` of scalar values (`simple_value`) at a step.
 *
 * The tags are HF's `rewrite_logs`: `eval_x` → `eval/x`, `test_x` → `test/x`, any other key → `train/x` (so
 * `train/loss`, `train/learning_rate`, `train/grad_norm`, `train/epoch`, `eval/loss`); only numbers are written, at
 * `state.global_step`, as `on_log` does. The folder is `logging_dir`, else `$TENSORBOARD_LOGGING_DIR`, else
 * `output_dir/runs/<Mon DD_HH-MM-SS>_<host>` (HF's `default_logdir`).
 * @module
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** A minimal protocol-buffer writer (varint, fixed32/64 and length-delimited fields). */
class Proto {
  readonly #bytes: number[] = [];
  #varint(v: bigint): void {
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) {
      this.#bytes.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.#bytes.push(Number(x));
  }
  #key(field: number, wire: number): void {
    this.#varint(BigInt((field << 3) | wire));
  }
  int64(field: number, v: number): this {
    this.#key(field, 0);
    this.#varint(BigInt(Math.trunc(v)));
    return this;
  }
  double(field: number, v: number): this {
    this.#key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.#bytes.push(...b);
    return this;
  }
  float(field: number, v: number): this {
    this.#key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.#bytes.push(...b);
    return this;
  }
  bytes(field: number, v: Uint8Array): this {
    this.#key(field, 2);
    this.#varint(BigInt(v.length));
    this.#bytes.push(...v);
    return this;
  }
  string(field: number, v: string): this {
    return this.bytes(field, new TextEncoder().encode(v));
  }
  done(): Uint8Array {
    return Uint8Array.from(this.#bytes);
  }
}

/** An `Event` (wall_time = 1, step = 2, file_version = 3, summary = 5) with a file version or scalar values. */
export function eventBytes(
  wallTime: number,
  step: number,
  body: { fileVersion: string } | {
    scalars: Record<string, number>;
  },
): Uint8Array {
  // proto3 leaves fields at their defaults out (step 0 of the file-version event).
  const e = new Proto().double(1, wallTime);
  if (step !== 0) e.int64(2, step);
  if ("fileVersion" in body) return e.string(3, body.fileVersion).done();
  const summary = new Proto();
  // Summary.value = 1: Value { tag = 1, simple_value = 2 }.
  for (const [tag, v] of Object.entries(body.scalars)) summary.bytes(1, new Proto().string(1, tag).float(2, v).done());
  return e.bytes(5, summary.done()).done();
}

/** HF's `rewrite_logs` and `on_log` filter: numbers only, tagged `train/…`, `eval/…` or `test/…`. */
export function tensorBoardScalars(logs: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(logs)) {
    if (typeof v !== "number") continue;
    const tag = k.startsWith("eval_")
      ? `eval/${k.slice(5)}`
      : k.startsWith("test_")
      ? `test/${k.slice(5)}`
      : `train/${k}`;
    out[tag] = v;
  }
  return out;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number) => String(n).padStart(2, "0");

/** HF's `default_logdir()` under `outputDir`: `runs/<%b%d_%H-%M-%S>_<hostname>` (local time, as Python's now()). */
export function defaultLogDir(outputDir: string, now = new Date(), host = Deno.hostname()): string {
  const t = `${MONTHS[now.getMonth()]}${two(now.getDate())}_${two(now.getHours())}-${two(now.getMinutes())}-${
    two(now.getSeconds())
  }`;
  return `${outputDir.replace(/\/+$/, "")}/runs/${t}_${host}`;
}

/** Writes one events file; each {@linkcode log} appends a record and flushes it, as `on_log` does. */
export class TensorBoardWriter {
  readonly #file: Deno.FsFile;
  /** The events file written. */
  readonly path: string;

  private constructor(file: Deno.FsFile, path: string) {
    this.#file = file;
    this.path = path;
  }

  /** Creates `dir` and a new events file in it (torch's name), starting with the file-version event. */
  static open(dir: string, now = Date.now()): TensorBoardWriter {
    Deno.mkdirSync(dir, { recursive: true });
    const secs = Math.floor(now / 1000);
    let path = "";
    for (let n = 0;; n++) {
      path = `${dir}/events.out.tfevents.${String(secs).padStart(10, "0")}.${Deno.hostname()}.${Deno.pid}.${n}`;
      try {
        Deno.statSync(path);
      } catch {
        break;
      }
    }
    const file = Deno.openSync(path, { createNew: true, write: true });
    const w = new TensorBoardWriter(file, path);
    w.#write(eventBytes(now / 1000, 0, { fileVersion: "brain.Event:2" }));
    return w;
  }

  #write(event: Uint8Array): void {
    const rec = tfRecord(event);
    for (let off = 0; off < rec.length;) off += this.#file.writeSync(rec.subarray(off));
  }

  /** One HF log (a `log_history` entry without its `step`) at `step`; nothing when it holds no number. */
  log(step: number, logs: Record<string, unknown>, wallTime = Date.now() / 1000): void {
    const scalars = tensorBoardScalars(logs);
    if (Object.keys(scalars).length) this.#write(eventBytes(wallTime, step, { scalars }));
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}
