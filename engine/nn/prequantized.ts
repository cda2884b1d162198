/**
 * Checkpoints quantized before Whetstone sees them (`quantization_config` in config.json: AWQ, GPTQ, AQLM, HQQ, EETQ,
 * FP8, bitsandbytes, ...) are refused, naming the file, the field and its value: Whetstone loads F32, BF16 or F16
 * weights and quantizes them itself at load (`quantization_bit` 4 or 8 in bitsandbytes' formats, as QLoRA and QOFT
 * do). The one exception is the gpt-oss releases' MXFP4, which loading dequantizes (mxfp4.ts), as LLaMA-Factory loads
 * them. LLaMA-Factory trains LoRA and OFT on AWQ and GPTQ bases through their CUDA kernels (autoawq, gptqmodel); their
 * packed int4 `qweight`/`qzeros`/`scales` tensors have no kernel here.
 * @module
 */
import { dequantizedAtLoad } from "./mxfp4.ts";

/** What the refusal tells a user to do instead. */
export const PREQUANTIZED_HINT = "Whetstone loads unquantized checkpoints (F32, BF16 or F16 weights) and quantizes " +
  "them itself with quantization_bit 4 or 8 (bitsandbytes' NF4/FP4 and int8, as QLoRA and QOFT train on), and reads " +
  "gpt_oss's MXFP4 releases, dequantized at load; train on the unquantized model with quantization_bit instead";

/**
 * Throws when `config` (the parsed `config.json` of model folder `dir`) names a pre-quantized checkpoint Whetstone
 * cannot load; returns quietly for unquantized ones and gpt-oss's MXFP4.
 */
export function checkNotPrequantized(dir: string, config: Record<string, unknown>): void {
  const q = config.quantization_config;
  if (q === undefined || q === null || dequantizedAtLoad(config)) return;
  const method = typeof q === "object" && !Array.isArray(q) ? (q as Record<string, unknown>).quant_method : undefined;
  const what = method === undefined
    ? `quantization_config ${JSON.stringify(q)} (no quant_method)`
    : `quantization_config.quant_method ${JSON.stringify(method)}`;
  throw new Error(`${dir}/config.json: ${what} is not supported: ${PREQUANTIZED_HINT}`);
}
