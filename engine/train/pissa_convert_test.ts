import assert from "node:assert/strict";
import { attachAdapter } from "../nn/lora.ts";
import { loadModel } from "../nn/model.ts";
import { PISSA_CONVERTED_DIR, savePissaConverted } from "./pissa_convert.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;

Deno.test("pissa_convert: a PiSSA adapter is also written as a rank-2r LoRA in output_dir/pissa_converted", async () => {
  const out = await Deno.makeTempDir();
  try {
    const model = await loadModel(`${root}llama`, { executor: "reference" });
    await attachAdapter(model, { r: 4, alpha: 8, targets: "all", init: "pissa" });
    const dir = await savePissaConverted(model, `${out}/`);
    assert.equal(dir, `${out}/${PISSA_CONVERTED_DIR}`);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
    assert.deepEqual([cfg.r, cfg.lora_alpha, cfg.init_lora_weights], [8, 16, true]);
    assert.ok((await Deno.stat(`${dir}/adapter_model.safetensors`)).isFile);

    const plain = await loadModel(`${root}llama`, { executor: "reference" });
    await attachAdapter(plain, { r: 4, alpha: 8, targets: "all" });
    assert.equal(await savePissaConverted(plain, `${out}/plain`), null, "nothing to convert without PiSSA");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
