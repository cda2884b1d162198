/**
 * Test helpers of the llamafactory runner and the model routes: the stand-in `llamafactory-cli` put first on PATH
 * (fixtures/llamafactory_standin), and a real PEFT adapter for the tiny model, made with the engine.
 * @module
 */
import { loadModel } from "../engine/mod.ts";
import { attachAdapter, saveAdapter } from "../engine/nn/lora.ts";
import { ROOT } from "./testing.ts";

/** The stand-in's folder. */
export const STANDIN_DIR = `${ROOT}/fixtures/llamafactory_standin`;

/** Sets environment variables (and PATH with the stand-in first) for `fn`, restoring them afterwards. */
export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = new Map(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    return await fn();
  } finally {
    for (const [k, v] of old) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

/** PATH with the stand-in first. */
export const standinPath = (): string => `${STANDIN_DIR}:${Deno.env.get("PATH") ?? ""}`;

/**
 * Writes a LoRA adapter (rank 4, every linear layer, A and B both random so it changes the model's answers) for
 * fixtures/tiny/model into `dir`, as PEFT writes one.
 */
export async function makeTinyAdapter(dir: string): Promise<void> {
  const model = await loadModel(`${ROOT}/fixtures/tiny/model`, { executor: "reference", dtype: "f32" });
  try {
    await attachAdapter(model, { r: 4, alpha: 32, targets: "all", init: false }, { seed: 7 });
    await saveAdapter(model, dir, { baseModel: "fixtures/tiny/model" });
  } finally {
    model.executor.dispose();
  }
}
