/**
 * ONNX Runtime's C API reached through Deno's FFI: sessions whose runs read their inputs from host arrays and write
 * chosen outputs into host arrays with no copy on either side. onnxruntime-node's binding copies every output into a
 * fresh array after the run, preallocated ones too (1.6 GB of weights and AdamW states a 135M full-tuning step); here
 * a state written in place costs nothing past the run. The library is the one onnxruntime-node has already loaded
 * (same process, same `OrtEnv`): import onnxruntime-node (deps.ts `loadOrt`) first.
 *
 * Only a few functions of the `OrtApi` table are used; their slots are fixed by the C API's ABI (members are only
 * ever appended), see `SLOT`.
 *
 * @example
 * ```ts
 * await loadOrt();
 * const ort = OrtFfi.open();
 * const s = await ort!.createSession(modelBytes, { graphOptimizationLevel: "basic" });
 * const y = new Float32Array(4);
 * await s.run([{ name: "x", data: x, shape: [4] }], [{ name: "y", into: { data: y, shape: [4] } }]);
 * ```
 * @module
 */

/** Slots of the functions used in `OrtApi` (onnxruntime_c_api.h; the order is the ABI). */
const SLOT = {
  GetErrorMessage: 2,
  CreateEnv: 3,
  CreateSessionFromArray: 8,
  Run: 9,
  CreateSessionOptions: 10,
  SetOptimizedModelFilePath: 11,
  SetSessionExecutionMode: 13,
  EnableProfiling: 14,
  EnableMemPattern: 16,
  DisableMemPattern: 17,
  EnableCpuMemArena: 18,
  DisableCpuMemArena: 19,
  SetSessionLogSeverityLevel: 22,
  SetSessionGraphOptimizationLevel: 23,
  SetIntraOpNumThreads: 24,
  SetInterOpNumThreads: 25,
  CreateTensorWithDataAsOrtValue: 49,
  GetTensorMutableData: 51,
  GetTensorElementType: 60,
  GetDimensionsCount: 61,
  GetDimensions: 62,
  GetTensorTypeAndShape: 65,
  CreateCpuMemoryInfo: 69,
  ReleaseStatus: 93,
  ReleaseMemoryInfo: 94,
  ReleaseSession: 95,
  ReleaseValue: 96,
  ReleaseTensorTypeAndShapeInfo: 99,
  ReleaseSessionOptions: 100,
} as const;

/** The C API version asked for: the oldest that has every slot above (ONNX Runtime 1.x keeps older versions). */
const API_VERSION = 1;

const P = "pointer" as const, B = "buffer" as const;
const status = (...parameters: Deno.NativeType[]) => ({ parameters, result: P });
const SIGNATURES = {
  GetErrorMessage: { parameters: [P], result: P },
  CreateEnv: status("i32", B, B),
  CreateSessionFromArray: { ...status(P, B, "usize", P, B), nonblocking: true },
  Run: { ...status(P, P, B, B, "usize", B, "usize", B), nonblocking: true },
  CreateSessionOptions: status(B),
  SetOptimizedModelFilePath: status(P, B),
  SetSessionExecutionMode: status(P, "i32"),
  EnableProfiling: status(P, B),
  EnableMemPattern: status(P),
  DisableMemPattern: status(P),
  EnableCpuMemArena: status(P),
  DisableCpuMemArena: status(P),
  SetSessionLogSeverityLevel: status(P, "i32"),
  SetSessionGraphOptimizationLevel: status(P, "i32"),
  SetIntraOpNumThreads: status(P, "i32"),
  SetInterOpNumThreads: status(P, "i32"),
  CreateTensorWithDataAsOrtValue: status(P, P, "usize", B, "usize", "i32", B),
  GetTensorMutableData: status(P, B),
  GetTensorElementType: status(P, B),
  GetDimensionsCount: status(P, B),
  GetDimensions: status(P, B, "usize"),
  GetTensorTypeAndShape: status(P, B),
  CreateCpuMemoryInfo: status("i32", "i32", B),
  ReleaseStatus: { parameters: [P], result: "void" },
  ReleaseMemoryInfo: { parameters: [P], result: "void" },
  ReleaseSession: { parameters: [P], result: "void" },
  ReleaseValue: { parameters: [P], result: "void" },
  ReleaseTensorTypeAndShapeInfo: { parameters: [P], result: "void" },
  ReleaseSessionOptions: { parameters: [P], result: "void" },
} as const satisfies { [K in keyof typeof SLOT]: Deno.UnsafeCallbackDefinition | Deno.ForeignFunction };

type Api = { [K in keyof typeof SIGNATURES]: Deno.UnsafeFnPointer<(typeof SIGNATURES)[K]>["call"] };

/** A host array ONNX Runtime reads or writes in place. */
export type FfiData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** A tensor over a host array (no copy). */
export interface FfiTensor {
  data: FfiData;
  shape: readonly number[];
  /** ONNX element type (default: the array's: FLOAT, DOUBLE, INT32, INT64, UINT8). */
  type?: number;
}

/** One output of a run: `into` a host array (written by ONNX Runtime itself), or allocated and copied out. */
export interface FfiOutput {
  name: string;
  into?: FfiTensor;
}

/** The session options understood (the subset of onnxruntime-node's that Whetstone sets). */
export interface FfiSessionOptions {
  executionProviders?: readonly unknown[];
  graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  enableMemPattern?: boolean;
  enableCpuMemArena?: boolean;
  intraOpNumThreads?: number;
  interOpNumThreads?: number;
  executionMode?: "sequential" | "parallel";
  logSeverityLevel?: number;
  optimizedModelFilePath?: string;
  enableProfiling?: boolean;
  profileFilePrefix?: string;
}

const LEVEL = { disabled: 0, basic: 1, extended: 2, all: 99 } as const;
const ARRAY_OF: Record<number, new (b: ArrayBuffer) => FfiData> = {
  1: Float32Array,
  2: Uint8Array,
  6: Int32Array,
  7: BigInt64Array,
  9: Uint8Array,
  11: Float64Array,
};

function typeOf(d: FfiData): number {
  if (d instanceof Float32Array) return 1;
  if (d instanceof Int32Array) return 6;
  if (d instanceof BigInt64Array) return 7;
  if (d instanceof Float64Array) return 11;
  return 2;
}

const cstr = (s: string) => new TextEncoder().encode(s + "\0");
const ptrAt = (cell: BigUint64Array, i = 0) => Deno.UnsafePointer.create(cell[i]);

/** ONNX Runtime's C API over FFI (see the module doc). */
export class OrtFfi {
  private constructor(
    private readonly api: Api,
    private readonly env: Deno.PointerObject,
    private readonly memInfo: Deno.PointerObject,
  ) {}

  private static opened?: OrtFfi | null;

  /**
   * The C API of the ONNX Runtime library this process has loaded (onnxruntime-node's), or undefined where it cannot
   * be reached: no FFI permission, no loaded library found, or `WHETSTONE_ONNX_FFI=off`.
   */
  static open(): OrtFfi | undefined {
    if (OrtFfi.opened === undefined) {
      try {
        OrtFfi.opened = Deno.env.get("WHETSTONE_ONNX_FFI") === "off" ? null : OrtFfi.load();
      } catch {
        OrtFfi.opened = null;
      }
    }
    return OrtFfi.opened ?? undefined;
  }

  private static load(): OrtFfi | null {
    const path = loadedLibrary();
    if (!path) return null;
    const lib = Deno.dlopen(path, { OrtGetApiBase: { parameters: [], result: P } });
    const base = lib.symbols.OrtGetApiBase();
    if (!base) return null;
    const getApi = new Deno.UnsafeFnPointer(
      new Deno.UnsafePointerView(base).getPointer(0)!,
      {
        parameters: ["u32"],
        result: P,
      } as const,
    );
    const table = getApi.call(API_VERSION);
    if (!table) return null;
    const view = new Deno.UnsafePointerView(table);
    const api = {} as Record<string, unknown>;
    for (const [name, slot] of Object.entries(SLOT)) {
      const fn = new Deno.UnsafeFnPointer(view.getPointer(slot * 8)!, SIGNATURES[name as keyof typeof SLOT]);
      api[name] = fn.call.bind(fn);
    }
    const a = api as Api;
    const cell = new BigUint64Array(1);
    check(a, a.CreateEnv(2, cstr("whetstone"), cell));
    const env = ptrAt(cell)!;
    check(a, a.CreateCpuMemoryInfo(1, 0, cell)); // OrtArenaAllocator, OrtMemTypeDefault (as onnxruntime-node)
    return new OrtFfi(a, env, ptrAt(cell)!);
  }

  /** A session of the model `bytes` (built on ONNX Runtime's threads; the event loop keeps running). */
  async createSession(bytes: Uint8Array, opts: FfiSessionOptions = {}): Promise<FfiSession> {
    const a = this.api, cell = new BigUint64Array(1);
    check(a, a.CreateSessionOptions(cell));
    const so = ptrAt(cell)!;
    try {
      applyOptions(a, so, opts);
      check(a, await a.CreateSessionFromArray(this.env, bytes, BigInt(bytes.byteLength), so, cell));
    } finally {
      a.ReleaseSessionOptions(so);
    }
    return new FfiSession(a, ptrAt(cell)!, this.memInfo);
  }
}

/** Frees the native session of an {@link FfiSession} dropped without {@link FfiSession.release}. */
const orphans = new FinalizationRegistry<{ api: Api; session: Deno.PointerObject }>((h) =>
  h.api.ReleaseSession(h.session)
);

/** One session; runs are not concurrent (the caller serializes them). Freed by `release` or when collected. */
export class FfiSession {
  private released = false;

  /** @internal Made by {@link OrtFfi.createSession}. */
  constructor(
    private readonly api: Api,
    private readonly session: Deno.PointerObject,
    private readonly memInfo: Deno.PointerObject,
  ) {
    orphans.register(this, { api, session }, this);
  }

  /**
   * Runs the session on a thread of ONNX Runtime's: inputs are read from their arrays, outputs with `into` are
   * written into theirs; the others come back as fresh arrays (with their shapes), in the order asked.
   */
  async run(
    inputs: readonly (FfiTensor & { name: string })[],
    outputs: readonly FfiOutput[],
  ): Promise<({ data: FfiData; dims: number[] } | undefined)[]> {
    if (this.released) throw new Error("the ONNX Runtime session was released");
    const a = this.api;
    const made: Deno.PointerObject[] = [];
    const keep: unknown[] = []; // every buffer ONNX Runtime sees, alive until the run is over
    const names = (list: readonly { name: string }[]) => {
      const ptrs = new BigUint64Array(Math.max(list.length, 1));
      list.forEach((x, i) => {
        const s = cstr(x.name);
        keep.push(s);
        ptrs[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)));
      });
      return ptrs;
    };
    const value = (t: FfiTensor): bigint => {
      // `.buffer` moves a small array's data off V8's heap for good, so the pointer stays valid.
      let bytes = new Uint8Array(t.data.buffer as ArrayBuffer, t.data.byteOffset, t.data.byteLength);
      if (bytes.byteLength === 0) bytes = new Uint8Array(new ArrayBuffer(8));
      const shape = BigInt64Array.from(t.shape.length ? t.shape : [0], (d) => BigInt(d));
      keep.push(bytes, shape);
      const cell = new BigUint64Array(1);
      check(
        a,
        a.CreateTensorWithDataAsOrtValue(
          this.memInfo,
          Deno.UnsafePointer.of(bytes),
          BigInt(bytes.byteLength),
          shape,
          BigInt(t.shape.length),
          t.type ?? typeOf(t.data),
          cell,
        ),
      );
      made.push(ptrAt(cell)!);
      return cell[0];
    };
    const outValues = new BigUint64Array(Math.max(outputs.length, 1));
    try {
      const inValues = new BigUint64Array(Math.max(inputs.length, 1));
      inputs.forEach((t, i) => inValues[i] = value(t));
      outputs.forEach((o, i) => outValues[i] = o.into ? value(o.into) : 0n);
      const inNames = names(inputs), outNames = names(outputs);
      check(
        a,
        await a.Run(
          this.session,
          null,
          inNames,
          inValues,
          BigInt(inputs.length),
          outNames,
          BigInt(outputs.length),
          outValues,
        ),
      );
      return outputs.map((o, i) => o.into ? undefined : copyOut(a, ptrAt(outValues, i)!));
    } finally {
      for (const v of made) a.ReleaseValue(v);
      // Outputs ONNX Runtime allocated (copied out above, or left by a failed run).
      outputs.forEach((o, i) => {
        if (!o.into && outValues[i] !== 0n) a.ReleaseValue(ptrAt(outValues, i));
      });
      keep.length = 0;
    }
  }

  /** Frees the session (its runs fail after). */
  release(): void {
    if (this.released) return;
    this.released = true;
    orphans.unregister(this);
    this.api.ReleaseSession(this.session);
  }
}

/** Copies an output ONNX Runtime allocated into a fresh host array, with its dims. */
function copyOut(a: Api, v: Deno.PointerObject): { data: FfiData; dims: number[] } {
  const cell = new BigUint64Array(1);
  check(a, a.GetTensorTypeAndShape(v, cell));
  const info = ptrAt(cell)!;
  let dims: number[], type: number;
  try {
    const t = new Int32Array(1);
    check(a, a.GetTensorElementType(info, t));
    type = t[0];
    check(a, a.GetDimensionsCount(info, cell));
    const d = new BigInt64Array(Math.max(Number(cell[0]), 1));
    check(a, a.GetDimensions(info, d, cell[0]));
    dims = Array.from(d.subarray(0, Number(cell[0])), Number);
  } finally {
    a.ReleaseTensorTypeAndShapeInfo(info);
  }
  const Ctor = ARRAY_OF[type];
  if (!Ctor) throw new Error(`ONNX Runtime output of element type ${type}: not one Whetstone reads`);
  const n = dims.reduce((x, y) => x * y, 1);
  const buf = new ArrayBuffer(n * (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT);
  if (n > 0) {
    check(a, a.GetTensorMutableData(v, cell));
    new Deno.UnsafePointerView(ptrAt(cell)!).copyInto(new Uint8Array(buf));
  }
  return { data: new Ctor(buf), dims };
}

function applyOptions(a: Api, so: Deno.PointerObject, o: FfiSessionOptions): void {
  for (const [k, v] of Object.entries(o)) {
    if (v === undefined) continue;
    switch (k) {
      case "executionProviders":
        for (const ep of v as unknown[]) {
          const name = typeof ep === "string" ? ep : (ep as { name?: string }).name;
          if (name !== "cpu") throw new Error(`executionProviders: only "cpu" runs over FFI, got ${name}`);
        }
        break;
      case "graphOptimizationLevel":
        if (!(v in LEVEL)) throw new Error(`graphOptimizationLevel: expected ${Object.keys(LEVEL)}, got ${v}`);
        check(a, a.SetSessionGraphOptimizationLevel(so, LEVEL[v as keyof typeof LEVEL]));
        break;
      case "enableMemPattern":
        check(a, v ? a.EnableMemPattern(so) : a.DisableMemPattern(so));
        break;
      case "enableCpuMemArena":
        check(a, v ? a.EnableCpuMemArena(so) : a.DisableCpuMemArena(so));
        break;
      case "intraOpNumThreads":
        check(a, a.SetIntraOpNumThreads(so, v as number));
        break;
      case "interOpNumThreads":
        check(a, a.SetInterOpNumThreads(so, v as number));
        break;
      case "executionMode":
        check(a, a.SetSessionExecutionMode(so, v === "parallel" ? 1 : 0));
        break;
      case "logSeverityLevel":
        check(a, a.SetSessionLogSeverityLevel(so, v as number));
        break;
      case "optimizedModelFilePath":
        check(a, a.SetOptimizedModelFilePath(so, cstr(v as string)));
        break;
      case "enableProfiling":
        if (v) check(a, a.EnableProfiling(so, cstr(o.profileFilePrefix ?? "onnxruntime_profile_")));
        break;
      case "profileFilePrefix":
        break;
      default:
        throw new Error(`session option "${k}" is not one the ONNX Runtime FFI sessions understand`);
    }
  }
}

/** Throws ONNX Runtime's message when `st` is an error status (and frees it). */
function check(a: Api, st: Deno.PointerValue): void {
  if (st === null) return;
  const msg = Deno.UnsafePointerView.getCString(a.GetErrorMessage(st)!);
  a.ReleaseStatus(st);
  throw new Error(`ONNX Runtime: ${msg}`);
}

/** The path of the ONNX Runtime library loaded into this process (Linux: /proc/self/maps), or undefined. */
function loadedLibrary(): string | undefined {
  if (Deno.build.os !== "linux") return undefined;
  const maps = Deno.readTextFileSync("/proc/self/maps");
  const m = maps.match(/\s(\/\S*libonnxruntime\.so[.\d]*)\s*$/m);
  return m?.[1];
}
