/**
 * Process memory: the resident set as Linux reports it (current and peak, and a reset of the peak), V8's full
 * garbage collection, and glibc's `malloc_trim`. The last two are reached where the runtime allows (node:v8's
 * flags for `gc`, FFI on libc for `malloc_trim`); elsewhere they do nothing and say so.
 *
 * @example
 * ```ts
 * const before = residentBytes();
 * collectGarbage();
 * trimHeap();
 * console.log(before, residentBytes(), peakResidentBytes());
 * ```
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";

function status(key: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = Deno.readTextFileSync("/proc/self/status").match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined; // no /proc (not Linux) or no read permission
  }
}

/** The resident set size of this process in bytes (`VmRSS`), or undefined where /proc/self/status is unreadable. */
export function residentBytes(): number | undefined {
  return status("VmRSS");
}

/** The peak resident set size of this process in bytes since start or the last {@link resetPeakResident}. */
export function peakResidentBytes(): number | undefined {
  return status("VmHWM");
}

/** Resets the peak resident set size to the current one (Linux ≥ 4.0); returns whether it could. */
export function resetPeakResident(): boolean {
  try {
    Deno.writeTextFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

let gc: (() => void) | null | undefined;

/**
 * Runs V8's full garbage collection now; returns false where it cannot be reached. Used after a run hands back
 * large arrays that are dropped at once (onnxruntime-node copies every output, preallocated ones too), so their
 * memory is free before the next run allocates its own.
 */
export function collectGarbage(): boolean {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString("--expose-gc");
      const f = vm.runInNewContext("gc");
      gc = typeof f === "function" ? f : null;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  gc();
  return true;
}

let libc: { trim(pad: bigint): number; mallopt(param: number, value: number): number } | null | undefined;

function glibc() {
  if (libc === undefined) {
    try {
      const lib = Deno.dlopen("libc.so.6", {
        malloc_trim: { parameters: ["usize"], result: "i32" },
        mallopt: { parameters: ["i32", "i32"], result: "i32" },
      });
      libc = { trim: (pad) => lib.symbols.malloc_trim(pad), mallopt: (p, v) => lib.symbols.mallopt(p, v) };
    } catch {
      libc = null;
    }
  }
  return libc;
}

/**
 * glibc's `mallopt(M_MMAP_THRESHOLD, bytes)`: blocks of at least `bytes` are mapped on their own and given back to the
 * system when freed, whatever was freed before (the setting also stops glibc from raising the threshold as it goes,
 * to up to 32 MiB, which otherwise keeps freed blocks of a few MiB resident in the heap). Returns false where there is
 * no glibc or no FFI permission.
 */
export function setMmapThreshold(bytes: number): boolean {
  const c = glibc();
  return c ? c.mallopt(-3, bytes) === 1 : false;
}

/**
 * glibc's `malloc_trim(0)`: gives the free pages of every malloc arena back to the system. Returns false where
 * there is no glibc or no FFI permission.
 */
export function trimHeap(): boolean {
  const c = glibc();
  if (!c) return false;
  c.trim(0n);
  return true;
}
