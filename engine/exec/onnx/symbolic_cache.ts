/**
 * The on-disk cache of symbolic models (symbolic.ts): building one traces the graph at its probe sizes, lowers each
 * probe and fits them (a SmolLM2-135M LoRA step: ~4–5 s of a run's start, the generation graphs ~2 s more); a later
 * run that traces the same graph at the same sizes loads the fitted model instead. A graph with no symbolic model is
 * remembered too (its reason), so a later run does not probe it again.
 *
 * An entry is `<dir>/<key>.sym`, `<dir>` = {@link symbolicCacheDir} (`symbolic/` beside the optimized models of
 * model_cache.ts; `WHETSTONE_ONNX_CACHE=off` turns both off). The key is the SHA-256 of the trace (its structure and
 * every number, flattenGraph), the sizes, the lowering options and the source of the code that traces, lowers and
 * fits (engine/graph, engine/exec, engine/quant): an edit of that code misses every earlier entry. An entry holds
 * the fitted structure and polynomials, the lowered metadata and the encoded model, with a SHA-256 of its body: a
 * truncated or corrupt file is a miss (and removed). Writes go to a temporary file renamed into place, so concurrent
 * runs never read a half-written entry; the least recently used entries past `maxEntries` are removed on a write.
 * @module
 */
import { exists } from "../../util/fs.ts";
import { modelCacheDir } from "./model_cache.ts";
import type { Flat, Poly } from "./symbolic_fit.ts";
import type { SymbolicModel } from "./symbolic.ts";

/** What an entry holds: the symbolic model (its encoded bytes and node count), or why the graph has none. */
export type SymbolicEntry =
  | { sm: Omit<SymbolicModel, "model">; bytes: Uint8Array; nodes: number }
  | { why: string };

const MAGIC = "whetstone-symbolic-1\n";
const enc = new TextEncoder(), dec = new TextDecoder();

/** `<model cache dir>/symbolic`, or undefined when the cache is off (see model_cache.ts). */
export function symbolicCacheDir(): string | undefined {
  const dir = modelCacheDir();
  return dir && `${dir}/symbolic`;
}

async function sha256(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

const hex = (h: Uint8Array) => Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) all.set(p, o), o += p.length;
  return all;
}

let code: Promise<Uint8Array | undefined> | undefined;

/** SHA-256 of the sources that trace, lower and fit a graph; undefined when they cannot be read (no cache then). */
export function codeVersion(): Promise<Uint8Array | undefined> {
  return code ??= (async () => {
    const root = new URL("../../", import.meta.url);
    if (root.protocol !== "file:") return undefined;
    const files: string[] = [];
    const walk = async (rel: string) => {
      for await (const e of Deno.readDir(new URL(rel, root))) {
        if (e.isDirectory) await walk(`${rel}${e.name}/`);
        else if (e.isFile && e.name.endsWith(".ts") && !e.name.endsWith("_test.ts")) files.push(`${rel}${e.name}`);
      }
    };
    try {
      for (const d of ["graph/", "exec/", "quant/"]) await walk(d);
      files.sort();
      const parts: Uint8Array[] = [];
      for (const f of files) parts.push(enc.encode(`\n${f}\n`), await Deno.readFile(new URL(f, root)));
      return await sha256(concat(parts));
    } catch {
      return undefined;
    }
  })();
}

/**
 * The cache key of a trace `flat` at `sizes` compiled with `what` (outputs, lowering options: JSON), or undefined
 * when the code's version is unknown.
 */
export async function symbolicKey(
  flat: Flat,
  sizes: Record<string, number>,
  what: string,
): Promise<string | undefined> {
  const v = await codeVersion();
  if (!v) return undefined;
  const head = enc.encode(`${JSON.stringify(sizes)}\n${what}\n${flat.nums.length}\n`);
  return hex(
    await sha256(concat([v, head, new Uint8Array(Float64Array.from(flat.nums).buffer), enc.encode(flat.skeleton)])),
  );
}

const polyBytes = (ps: readonly Poly[]) => new Uint8Array(Float64Array.from(ps.flat()).buffer);

function polysOf(bytes: Uint8Array, n: number, width: number): Poly[] {
  const f = new Float64Array(bytes.slice().buffer);
  if (f.length !== n * width) throw new Error("polynomials: wrong length");
  return Array.from({ length: n }, (_, i) => Array.from(f.subarray(i * width, (i + 1) * width)));
}

/** The bytes of an entry: magic, header length (4 bytes), SHA-256 of the body, the body (header JSON, then blobs). */
export async function encodeEntry(e: SymbolicEntry): Promise<Uint8Array> {
  let header: Record<string, unknown>, blobs: Uint8Array[] = [];
  if ("why" in e) header = { why: e.why };
  else {
    const { sm } = e, width = 1 << sm.symbols.length;
    blobs = [polyBytes(sm.polys), polyBytes(sm.metaPolys), enc.encode(sm.skeleton), e.bytes];
    header = {
      symbols: sm.symbols,
      meta: sm.meta,
      width,
      polys: sm.polys.length,
      metaPolys: sm.metaPolys.length,
      nodes: e.nodes,
      blobs: blobs.map((b) => b.length),
    };
  }
  const h = enc.encode(JSON.stringify(header));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, h.length);
  const body = concat([len, h, ...blobs]);
  return concat([enc.encode(MAGIC), await sha256(body), body]);
}

/** The entry of `bytes`; throws when they are not a whole, intact entry. */
export async function decodeEntry(bytes: Uint8Array): Promise<SymbolicEntry> {
  const m = enc.encode(MAGIC);
  if (bytes.length < m.length + 36 || dec.decode(bytes.subarray(0, m.length)) !== MAGIC) {
    throw new Error("not an entry");
  }
  const sum = bytes.subarray(m.length, m.length + 32), body = bytes.subarray(m.length + 32);
  if (hex(await sha256(body)) !== hex(sum)) throw new Error("checksum mismatch");
  const hl = new DataView(body.buffer, body.byteOffset).getUint32(0);
  const header = JSON.parse(dec.decode(body.subarray(4, 4 + hl)));
  if (typeof header.why === "string") return { why: header.why };
  let o = 4 + hl;
  const blobs = (header.blobs as number[]).map((n) => body.subarray(o, o += n));
  if (o !== body.length) throw new Error("wrong length");
  const sm = {
    symbols: header.symbols,
    skeleton: dec.decode(blobs[2]),
    polys: polysOf(blobs[0], header.polys, header.width),
    meta: header.meta,
    metaPolys: polysOf(blobs[1], header.metaPolys, header.width),
  };
  return { sm, bytes: blobs[3].slice(), nodes: header.nodes };
}

/** Whether JSON keeps `v` as it is (finite numbers, not -0; strings, booleans, null; arrays and plain objects of them). */
function jsonSafe(v: unknown): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v) && !Object.is(v, -0);
  if (Array.isArray(v)) return v.every(jsonSafe);
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return Object.values(v as object).every((x) => x === undefined || jsonSafe(x));
  }
  return false;
}

/** The entry of `key`, its mtime refreshed, or undefined (absent; unreadable or corrupt: removed). */
export async function readSymbolic(dir: string, key: string): Promise<SymbolicEntry | undefined> {
  const path = `${dir}/${key}.sym`;
  if (!(await exists(path).catch(() => false))) return undefined;
  try {
    const e = await decodeEntry(await Deno.readFile(path));
    const now = new Date();
    await Deno.utime(path, now, now).catch(() => {}); // a read-only cache still serves
    return e;
  } catch {
    await Deno.remove(path).catch(() => {});
    return undefined;
  }
}

/**
 * Writes the entry of `key` (a temporary file renamed into place) and removes the least recently used entries past
 * `maxEntries`; errors are swallowed (a cache that cannot be written costs the next run the probes, nothing else).
 */
export async function writeSymbolic(dir: string, key: string, e: SymbolicEntry, maxEntries = 64): Promise<void> {
  try {
    if (!("why" in e) && !jsonSafe(e.sm.meta)) return;
    await Deno.mkdir(dir, { recursive: true });
    const tmp = `${dir}/${key}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await Deno.writeFile(tmp, await encodeEntry(e));
    await Deno.rename(tmp, `${dir}/${key}.sym`).catch(async (err) => {
      await Deno.remove(tmp).catch(() => {});
      throw err;
    });
    const entries: { path: string; t: number }[] = [];
    for await (const f of Deno.readDir(dir)) {
      if (!f.isFile || !f.name.endsWith(".sym")) continue;
      const path = `${dir}/${f.name}`;
      const t = await Deno.stat(path).then((s) => s.mtime?.getTime() ?? 0, () => undefined);
      if (t !== undefined) entries.push({ path, t });
    }
    entries.sort((a, b) => b.t - a.t);
    for (const { path } of entries.slice(maxEntries)) await Deno.remove(path).catch(() => {});
  } catch {
    // not writable: nothing cached
  }
}
