/** The export verb end to end: YAML config → merged HF folder (same logits) and ONNX (run by onnxruntime alone). */
import assert from "node:assert/strict";
import { exportMain } from "./export.ts";
import { loadModel } from "../engine/nn/model.ts";
import { OnnxDecoder } from "../engine/nn/onnx_decoder.ts";
import { base, IDS, maxDiff, tmpDir, withAdapter } from "../engine/nn/export_testing.ts";

Deno.test("export: the export verb merges an adapter from a YAML config", async () => {
  const dir = await tmpDir();
  try {
    const yaml = `model_name_or_path: ${base}\nadapter_name_or_path: ${base}/lora\ntemplate: llama3\n` +
      `export_dir: ${dir}/out\nexport_size: 5\nexport_legacy_format: false\n` +
      `export_onnx: true\n`;
    await Deno.writeTextFile(`${dir}/export.yaml`, yaml);
    const log = console.log;
    console.log = () => {};
    try {
      assert.equal(await exportMain([`${dir}/export.yaml`]), 0);
    } finally {
      console.log = log;
    }
    const back = await loadModel(`${dir}/out`, { executor: "reference" });
    const want = (await (await withAdapter("lora")).forward(IDS)).logits;
    assert.ok(maxDiff((await back.forward(IDS)).logits, want) <= 1e-5);
    // The merged model as ONNX (onnx/model.onnx beside config.json), run by onnxruntime alone: every position's logits.
    const dec = await OnnxDecoder.load(`${dir}/out`);
    const { ids, mask, positions } = OnnxDecoder.leftPad([IDS[0]]);
    const { logits } = await dec.step(ids, mask, positions);
    assert.ok(maxDiff(logits, want.subarray(0, logits.length)) <= 1e-4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
