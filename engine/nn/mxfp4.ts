/**
 * MXFP4 expert weights of the released gpt-oss checkpoints (`quantization_config.quant_method` "mxfp4"), dequantized
 * at load as transformers does with `Mxfp4Config(dequantize=True)` (LLaMA-Factory's choice for them; integrations/
 * mxfp4.py `convert_moe_packed_tensors`):
 *
 * `<name>_blocks` U8 [E, R, G, 16] holds 32 FP4 (e2m1) codes per row block, two per byte, the low nibble first;
 * `<name>_scales` U8 [E, R, G] the block's E8M0 exponent (scale 2^(s − 127)). Value = FP4 table[code] · 2^(s − 127);
 * the rows [E, R, G·32] are then transposed to [E, G·32, R] — gate_up_proj [E, 2I, H/32, 16] → [E, H, 2I], down_proj
 * [E, H, I/32, 16] → [E, I, H], the layouts modeling_gpt_oss.py multiplies with. Every value is exact in bf16 (an FP4
 * value has at most 2 significant bits), which is the dtype transformers dequantizes to, so it is stored as bf16.
 * @module
 */

/** The 16 e2m1 values by code (transformers' FP4_VALUES). */
export const FP4_VALUES = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** The dequantized shape of `<name>_blocks` [E, R, G, 16]: [E, G·32, R]. */
export function mxfp4Shape(blocks: readonly number[]): number[] {
  if (blocks.length !== 4 || blocks[3] !== 16) {
    throw new Error(`MXFP4 blocks must be [experts, rows, groups, 16], got [${blocks.join(", ")}]`);
  }
  return [blocks[0], blocks[2] * 32, blocks[1]];
}

/**
 * Dequantizes `blocks` [E, R, G, 16] with `scales` [E, R, G] into bf16 bits [E, G·32, R] (see the module doc); the
 * result's bytes are what a BF16 safetensors tensor of that shape holds.
 */
export function dequantizeMxfp4(blocks: Uint8Array, scales: Uint8Array, blocksShape: readonly number[]): Uint16Array {
  const [E, R, G] = blocksShape, C = G * 32;
  if (blocks.length !== E * R * G * 16 || scales.length !== E * R * G) {
    throw new Error(
      `MXFP4: ${blocks.length} block bytes and ${scales.length} scales for blocks [${blocksShape.join(", ")}]`,
    );
  }
  // bf16 bits of every (code, exponent): FP4 value · 2^(s − 127), exact in f32 and in bf16 (its top 16 bits).
  const f = new Float32Array(1), bits = new Uint32Array(f.buffer);
  const table = new Uint16Array(256 * 16);
  for (let s = 0; s < 256; s++) {
    const scale = 2 ** (s - 127);
    for (let c = 0; c < 16; c++) {
      f[0] = FP4_VALUES[c] * scale;
      table[s * 16 + c] = bits[0] >>> 16;
    }
  }
  const out = new Uint16Array(E * C * R);
  for (let e = 0; e < E; e++) {
    for (let r = 0; r < R; r++) {
      for (let g = 0; g < G; g++) {
        const row = (e * R + r) * G + g, t = scales[row] * 16;
        for (let b = 0; b < 16; b++) {
          const byte = blocks[row * 16 + b], c = g * 32 + 2 * b;
          out[(e * C + c) * R + r] = table[t + (byte & 15)];
          out[(e * C + c + 1) * R + r] = table[t + (byte >> 4)];
        }
      }
    }
  }
  return out;
}

/**
 * Whether config.json's quantization is gpt-oss's MXFP4, which loading dequantizes (so the model is not quantized
 * afterwards: transformers drops its quantization_method, and LLaMA-Factory resizes its embeddings like any other).
 */
export function dequantizedAtLoad(config: Record<string, unknown>): boolean {
  const q = config.quantization_config as Record<string, unknown> | undefined;
  return config.model_type === "gpt_oss" && q?.quant_method === "mxfp4";
}

/** What {@link readMxfp4} needs of an open model folder. */
export interface Mxfp4Source {
  readonly tensors: ReadonlyMap<string, { readonly dtype: string; readonly shape: readonly number[] }>;
  read(name: string): Promise<Uint8Array>;
}

/**
 * The dequantized bf16 bytes of weight `name` when the folder stores it as `<name>_blocks` + `<name>_scales`;
 * undefined when it does not. Throws when the pair is malformed or does not dequantize to `shape`.
 */
export async function readMxfp4(folder: Mxfp4Source, name: string, shape: readonly number[]) {
  const b = folder.tensors.get(`${name}_blocks`), s = folder.tensors.get(`${name}_scales`);
  if (!b) return undefined;
  if (!s) throw new Error(`MXFP4 weight "${name}": "${name}_blocks" has no "${name}_scales"`);
  if (b.dtype !== "U8" || s.dtype !== "U8") {
    throw new Error(`MXFP4 weight "${name}": blocks and scales must be U8, got ${b.dtype} and ${s.dtype}`);
  }
  const got = mxfp4Shape(b.shape);
  if (got.join() !== shape.join() || s.shape.join() !== b.shape.slice(0, 3).join()) {
    throw new Error(
      `MXFP4 weight "${name}": blocks [${b.shape.join(", ")}] and scales [${s.shape.join(", ")}] give ` +
        `[${got.join(", ")}], config.json implies [${shape.join(", ")}]`,
    );
  }
  const bits = dequantizeMxfp4(await folder.read(`${name}_blocks`), await folder.read(`${name}_scales`), b.shape);
  return new Uint8Array(bits.buffer);
}
