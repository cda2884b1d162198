/** Test helper of the export tests (engine/nn/export_test.ts, cli/export_test.ts): the fixture model and checks. */
import assert from "node:assert/strict";
import { attachAdapter } from "./lora.ts";
import { loadModel, type Model } from "./model.ts";

/** The repository root (with a trailing slash). */
export const repo: string = new URL("../../", import.meta.url).pathname;
/** The llama fixture; its `lora` and `dora` subfolders are PEFT adapters. */
export const base = `${repo}fixtures/models/llama`;
/** Two rows of token ids the fixture's vocabulary holds. */
export const IDS: number[][] = [[1, 5, 9, 33, 70, 2, 127, 64], [3, 3, 100, 17, 8, 41, 90, 11]];

/** The fixture on the reference executor in f32, with the adapter subfolder `sub` attached when given. */
export async function withAdapter(sub?: string): Promise<Model> {
  const model = await loadModel(base, { executor: "reference", dtype: "f32" });
  if (sub) await attachAdapter(model, `${base}/${sub}`);
  return model;
}

/** max |a - b| (asserting equal lengths). */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** A fresh temporary folder for one test. */
export async function tmpDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "whetstone_export_" });
}
