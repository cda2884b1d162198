/** checkNotPrequantized: unquantized configs and gpt-oss's MXFP4 pass; any other quantization_config is refused. */
import assert from "node:assert/strict";
import { checkNotPrequantized } from "./prequantized.ts";

Deno.test("checkNotPrequantized: refuses AWQ, GPTQ, bitsandbytes and FP8 checkpoints naming file, field and value", () => {
  checkNotPrequantized("m", { model_type: "llama" });
  checkNotPrequantized("m", { model_type: "llama", quantization_config: null });
  checkNotPrequantized("m", { model_type: "gpt_oss", quantization_config: { quant_method: "mxfp4" } });
  for (const method of ["awq", "gptq", "bitsandbytes", "fp8", "compressed-tensors"]) {
    assert.throws(
      () => checkNotPrequantized("models/x", { model_type: "llama", quantization_config: { quant_method: method } }),
      new RegExp(
        `^Error: models/x/config\\.json: quantization_config\\.quant_method "${method}" is not supported: Whetstone ` +
          "loads unquantized checkpoints .*quantization_bit 4 or 8.*gpt_oss's MXFP4",
      ),
    );
  }
  // MXFP4 is dequantized for gpt_oss only (transformers' Mxfp4 quantizer is gpt-oss's).
  assert.throws(
    () => checkNotPrequantized("m", { model_type: "llama", quantization_config: { quant_method: "mxfp4" } }),
    /quant_method "mxfp4" is not supported/,
  );
  assert.throws(
    () => checkNotPrequantized("m", { model_type: "llama", quantization_config: { bits: 4 } }),
    /m\/config\.json: quantization_config \{"bits":4\} \(no quant_method\) is not supported/,
  );
});
