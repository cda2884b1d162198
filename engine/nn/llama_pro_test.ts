/**
 * LLaMA Pro's block expansion: the expanded folder holds what LF's scripts/llama_pro.py writes for the tiny llama
 * (fixtures/methods/golden.json records the script's loop: each new name, its source and whether it is zeroed), and it
 * computes the original model's logits (zeroed o_proj and down_proj).
 */
import assert from "node:assert/strict";
import { openModelFolder } from "../io/hf_folder.ts";
import { blockExpansionPlan, expandBlocks } from "./llama_pro.ts";
import { loadModel } from "./model.ts";

const golden = JSON.parse(await Deno.readTextFile(new URL("../../fixtures/methods/golden.json", import.meta.url)));
const SRC = new URL("../../fixtures/models/llama", import.meta.url).pathname;

Deno.test("LLaMA Pro: the expansion plan and LF's divisibility check", () => {
  assert.deepEqual(blockExpansionPlan(4, 2).map((l) => `${l.source}${l.added ? "+" : ""}`), [
    "0",
    "1",
    "1+",
    "2",
    "3",
    "3+",
  ]);
  assert.throws(() => blockExpansionPlan(4, 3), /`num_layers` 4 should be divisible by `num_expand` 3\./);
});

Deno.test("LLaMA Pro: the expanded folder is LF's script's, and computes the original's logits", async () => {
  const dst = await Deno.makeTempDir({ prefix: "whetstone-llama-pro-" });
  try {
    const lines: string[] = [];
    await expandBlocks(SRC, dst, golden.llama_pro.num_expand, (l) => lines.push(l));
    assert.equal(lines[1], "Add layer 1 expanded from layer 0.");
    using src = await openModelFolder(SRC);
    using out = await openModelFolder(dst);
    assert.equal(out.config.num_hidden_layers, 4);
    assert.deepEqual([...out.tensors.keys()].sort(), golden.llama_pro.plan.map((p: string[]) => p[0]).sort());
    for (const [name, source, zero] of golden.llama_pro.plan as [string, string, boolean][]) {
      const got = await out.readF32(name), want = await src.readF32(source);
      assert.ok(zero ? got.every((v) => v === 0) : got.every((v, i) => v === want[i]), name);
    }
    const a = await loadModel(SRC, { executor: "reference" }), b = await loadModel(dst, { executor: "reference" });
    const ids = [[1, 5, 9, 30, 77, 2, 64]];
    const x = await a.forward(ids), y = await b.forward(ids);
    let worst = 0;
    x.logits.forEach((v, i) => worst = Math.max(worst, Math.abs(v - y.logits[i])));
    assert.ok(worst < 1e-5, `logits differ by ${worst}`);
  } finally {
    await Deno.remove(dst, { recursive: true });
  }
});
