/**
 * ONNX export of the dynamic and longrope fixtures of fixtures/rope/ (threshold 12, see engine/nn/rope_runs_test.ts):
 * run by {@link OnnxDecoder} alone and as a left-padded batch whose length passes the threshold mid-generation, the
 * tokens are transformers' (llama: the graph computes each step's frequencies from max(position_ids) + 1; Phi-3: the
 * decoder runs the whole sequences again at the crossing).
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { exportOnnxBeside } from "./onnx_export.ts";
import { OnnxDecoder } from "./onnx_decoder.ts";

const root = new URL("../../fixtures/rope/", import.meta.url).pathname;

for (const name of ["phi3_longrope12", "llama_longrope12", "llama_dynamic12"]) {
  Deno.test(`onnx export ${name}: batched greedy generation across the threshold gives transformers' tokens`, async () => {
    const runs = JSON.parse(await Deno.readTextFile(`${root}${name}/runs.json`));
    const model = await loadModel(`${root}${name}`, { executor: "reference", dtype: "f32" });
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(`${root}${name}/config.json`, `${dir}/config.json`);
      await exportOnnxBeside(model, dir);
      const dec = await OnnxDecoder.load(dir, { threads: 1 });
      for (const run of runs.generate) {
        const want = model.config.family === "phi3" ? run.new_tokens_no_cache : run.new_tokens;
        const got = await dec.generate(run.prompts, { maxNewTokens: runs.max_new_tokens });
        assert.deepEqual(got, want, `prompts of ${run.prompts.map((p: number[]) => p.length)} tokens`);
      }
    } finally {
      model.executor.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
