/**
 * The inference backends Whetstone serves with: its own engine only (LF's `infer_backend: huggingface`). Chat
 * (`deno task chat`), `POST /chat/models` and `deno task serve` refuse the backends LF can use and Whetstone lacks
 * (`vllm`, `sglang`, `ktransformers`) and their settings (`vllm_*`, `sglang_*`, `kt_*`, `use_kt`), naming the key,
 * as training refuses `infer_backend` (keys_model.ts).
 * @module
 */

/** LF's backend names; only "huggingface" is Whetstone's. */
const KNOWN = ["huggingface", "vllm", "sglang", "ktransformers"];

/** Why `infer_backend: value` cannot be served (undefined when it can: huggingface, null or absent). */
export function inferBackendProblem(value: unknown): string | undefined {
  if (value === undefined || value === null || value === "huggingface") return undefined;
  const name = JSON.stringify(value);
  if (typeof value === "string" && KNOWN.includes(value)) {
    return `Whetstone has no ${value} backend; it generates with its own engine (continuous batching included): ` +
      `set infer_backend: huggingface or leave it out`;
  }
  return `unknown inference backend ${name}; expected huggingface (LF's others, vllm, sglang and ktransformers, ` +
    `are not part of Whetstone)`;
}

/** The first key of `cfg` that sets a backend Whetstone lacks, and why; undefined when there is none. */
export function backendKeyProblem(cfg: Record<string, unknown>): { field: string; message: string } | undefined {
  const backend = inferBackendProblem(cfg.infer_backend);
  if (backend) return { field: "infer_backend", message: backend };
  for (const [key, value] of Object.entries(cfg)) {
    const m = /^(vllm|sglang|kt)_/.exec(key) ?? (key === "use_kt" ? [key, "kt"] : null);
    if (!m || value === null || value === undefined || value === false) continue;
    const name = { vllm: "vLLM", sglang: "SGLang", kt: "KTransformers" }[m[1]];
    return {
      field: key,
      message: `a ${name} setting; Whetstone has no ${name} backend (it serves with its own engine)`,
    };
  }
  return undefined;
}
