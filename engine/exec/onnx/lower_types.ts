/**
 * The contract of an ONNX lowering: what a lowering of one graph node receives and returns.
 * @module
 */
import type { Attrs, DType, TensorInfo } from "../../graph/types.ts";
import type { OnnxBuilder } from "./builder.ts";
import { ONNX_TYPE } from "./proto.ts";

/** What a lowering receives for one node. */
export interface LowerCtx {
  readonly b: OnnxBuilder;
  /** ONNX value names of the node's inputs. */
  readonly ins: readonly string[];
  readonly inInfos: readonly TensorInfo[];
  readonly outInfos: readonly TensorInfo[];
  readonly attrs: Attrs;
  /** The data of input i when it is a graph constant (e.g. rope's frequency words). */
  constData(i: number): Float64Array | undefined;
  /** The fused LM head's chunking the caller asks for (lower_linear_ce.ts `ceBlocks`; default "auto"). */
  readonly headChunks?: string;
}

/**
 * Lowers one node: returns the ONNX names of its outputs, then (for ops with effects) the new value of
 * each input it writes, in the order of the op's `effects`.
 */
export type OnnxLowering = (c: LowerCtx) => string[];

/**
 * The ONNX element type a graph dtype lives in: every float is FLOAT (f16/bf16 values are rounded after
 * each op that makes them, so they hold exactly the values the other executors hold), i32 is INT32 and
 * u32 is INT64 (onnxruntime's CPU kernels are thin on unsigned types).
 */
export function onnxTypeOf(dtype: DType): number {
  return dtype === "i32" ? ONNX_TYPE.INT32 : dtype === "u32" ? ONNX_TYPE.INT64 : ONNX_TYPE.FLOAT;
}
