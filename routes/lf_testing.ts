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

/**
 * Server options running the stand-in: found on the PATH searched (the stand-in's folder only, so that no real
 * llamafactory-cli is picked), its knobs (STANDIN_*) in the child's environment — never in this process's, which
 * test files running in parallel share.
 */
export const standin = (env: Record<string, string> = {}, graceMs = 1500) => ({
  llamafactory: { searchPath: STANDIN_DIR, env, pollMs: 50, graceMs },
});

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
