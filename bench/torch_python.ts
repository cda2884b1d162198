/**
 * The Python the benches compare against: `WHETSTONE_TORCH_PYTHON` when set (a path to a Python with torch and
 * peft), else `<repo>/.venv/bin/python` when present. {@linkcode torchPython} probes it once (imports torch,
 * transformers and peft) and says why it cannot be used, so a bench prints Whetstone's side and that reason.
 * @module
 */
import { exists } from "../engine/util/fs.ts";

/**
 * `WHETSTONE_TORCH_THREADS`: torch's intra-op threads in the baseline scripts (default: torch's own choice, the
 * core count). On a loaded machine fewer threads than cores can be faster (OpenMP threads wait on each other).
 */
export function torchThreads(): number | undefined {
  const v = Deno.env.get("WHETSTONE_TORCH_THREADS");
  if (!v) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`WHETSTONE_TORCH_THREADS: expected a whole number ≥ 1, got "${v}"`);
  }
  return n;
}

/** The environment variable naming the baseline's Python. */
export const TORCH_PYTHON_ENV = "WHETSTONE_TORCH_PYTHON";

/** A usable Python (with its torch version and thread count), or why there is none. */
export type TorchPython =
  | { ok: true; python: string; torch: string; peft: string; threads: number }
  | { ok: false; python?: string; reason: string };

let probed: Promise<TorchPython> | undefined;

/** The configured Python, probed once per process. */
export function torchPython(): Promise<TorchPython> {
  return probed ??= probe();
}

async function probe(): Promise<TorchPython> {
  const set = Deno.env.get(TORCH_PYTHON_ENV);
  const python = set || new URL("../.venv/bin/python", import.meta.url).pathname;
  if (!set && !await exists(python)) {
    return { ok: false, reason: `no ${python} and ${TORCH_PYTHON_ENV} unset` };
  }
  const code = "import json, torch, transformers, peft; " +
    "print(json.dumps({'torch': torch.__version__, 'peft': peft.__version__, 'threads': torch.get_num_threads()}))";
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(python, { args: ["-c", code], stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    return { ok: false, python, reason: `${python} does not run: ${(e as Error).message}` };
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? "";
    return { ok: false, python, reason: `${python} lacks torch/transformers/peft (${err})` };
  }
  const v = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  return { ok: true, python, torch: v.torch, peft: v.peft, threads: v.threads };
}
