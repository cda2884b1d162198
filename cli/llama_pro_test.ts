/** The llama_pro verb: LF's script flags → an expanded folder with the layer count and LF's closing lines. */
import assert from "node:assert/strict";
import { llamaProMain } from "./llama_pro.ts";

const SRC = new URL("../fixtures/models/llama", import.meta.url).pathname;

Deno.test("llama_pro: the verb expands a model folder and prints LF's fine-tuning settings", async () => {
  const dir = await Deno.makeTempDir({ prefix: "whetstone-llama-pro-cli-" });
  const lines: string[] = [];
  const log = console.log;
  console.log = (l: string) => lines.push(l);
  try {
    assert.equal(await llamaProMain(["--model_name_or_path", SRC, "--output_dir", `${dir}/pro`, "--num_expand=1"]), 0);
  } finally {
    console.log = log;
  }
  try {
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/pro/config.json`));
    assert.equal(cfg.num_hidden_layers, 3);
    assert.deepEqual(lines.slice(0, 3), [
      "Add layer 0 copied from layer 0.",
      "Add layer 1 copied from layer 1.",
      "Add layer 2 expanded from layer 1.",
    ]);
    assert.ok(lines.includes("freeze_trainable_layers: 1") && lines.includes("use_llama_pro: true"));
    assert.equal(await llamaProMain(["--output_dir", dir]), 2);
    await assert.rejects(llamaProMain(["--num_layers", "2"]), /unknown flag --num_layers/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
