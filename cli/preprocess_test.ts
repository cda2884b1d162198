/** The preprocess verb: YAML + overrides → JSONL records equal to processing the loaded examples directly. */
import assert from "node:assert/strict";
import { goldens, goldenTokenizer } from "../engine/data/data_goldens.ts";
import { parsePreprocessArgs, preprocess, preprocessMain } from "./preprocess.ts";
import { processDataset } from "../engine/data/process.ts";
import { getTemplate } from "../engine/data/template.ts";
import { loadDatasets } from "../engine/data/loader.ts";

const ROOT = new URL("../", import.meta.url).pathname;

async function tempDataset(): Promise<string> {
  const dir = await Deno.makeTempDir();
  const rows = [
    { instruction: "Say hi.", input: "", output: "Hi!" },
    { instruction: "Add", input: "2 + 2", output: "4" },
  ];
  await Deno.writeTextFile(`${dir}/tiny.json`, JSON.stringify(rows));
  await Deno.writeTextFile(`${dir}/dataset_info.json`, JSON.stringify({ tiny: { file_name: "tiny.json" } }));
  return dir;
}

Deno.test("config file, key=value overrides (YAML scalars) and output flags", async () => {
  const dir = await tempDataset();
  await Deno.writeTextFile(
    `${dir}/cfg.yaml`,
    "stage: sft\ncutoff_len: 2048\ntemplate: llama3\nlearning_rate: 1.0e-4\n",
  );
  const cmd = await parsePreprocessArgs([`${dir}/cfg.yaml`, "cutoff_len=16", "packing=true", "--out", "x.jsonl"]);
  assert.deepEqual(cmd.config, {
    stage: "sft",
    cutoff_len: 16,
    template: "llama3",
    learning_rate: 1e-4,
    packing: true,
  });
  assert.equal(cmd.out, "x.jsonl");
  await assert.rejects(() => parsePreprocessArgs(["cutoff_len=1"]), /expected a config file/);
  await assert.rejects(() => parsePreprocessArgs([`${dir}/cfg.yaml`, "bogus"]), /unexpected argument/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("preprocess writes the records of processDataset in dataset order", async () => {
  const dir = await tempDataset();
  const model = `${ROOT}${goldens.tokenizers.llama3}`;
  const config = {
    model_name_or_path: model,
    template: "llama3",
    dataset: "tiny",
    dataset_dir: dir,
    stage: "sft",
    cutoff_len: 64,
  };
  await Deno.writeTextFile(`${dir}/cfg.json`, JSON.stringify(config));
  const out = `${dir}/out.jsonl`;
  const code = await preprocessMain([`${dir}/cfg.json`, "--out", out]);
  assert.equal(code, 0);
  const lines = (await Deno.readTextFile(out)).trimEnd().split("\n").map((l) => JSON.parse(l));
  const { train } = await loadDatasets({ dataset: "tiny", dataset_dir: dir, stage: "sft" });
  const tpl = getTemplate(await goldenTokenizer("llama3"), { template: "llama3" });
  assert.deepEqual(lines, processDataset(train, tpl, { stage: "sft", cutoffLen: 64 }).records);
  assert.equal(lines.length, 2);
  const text = tpl.tokenizer.decode((lines[1] as { input_ids: number[] }).input_ids);
  assert.equal(
    text,
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nAdd\n2 + 2<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>",
  );
  assert.equal(await preprocessMain([`${dir}/cfg.json`, "model_name_or_path=Qwen/Qwen3-4B", "--out", out]), 1);
  await assert.rejects(
    () => preprocess({ ...config, stage: "sft", train_on_prompt: true, mask_history: true }),
    /incompatible/,
  );
  await Deno.remove(dir, { recursive: true });
});
