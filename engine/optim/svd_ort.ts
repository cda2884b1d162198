/**
 * A {@link Gemm} for {@link topSingular} on onnxruntime-node's CPU f64 Gemm (~20 GMAC/s on this machine's
 * 2 cores against ~1.6 for the JS loops). Inputs are wrapped, not copied; the two sessions (x·y and x·yᵀ,
 * symbolic dims) are built once per process.
 *
 * @example
 * ```ts
 * const { u } = await topSingular(grad, 4096, 11008, 128, { gemm: await ortGemm() });
 * ```
 * @module
 */
import { loadOrt, type Ort } from "../../deps.ts";
import { OnnxBuilder } from "../exec/onnx/builder.ts";
import { encodeModel, ONNX_TYPE } from "../exec/onnx/proto.ts";
import type { Gemm } from "./svd.ts";

let cached: Promise<Gemm> | undefined;

async function session(ort: Awaited<ReturnType<typeof loadOrt>>, transB: boolean): Promise<Ort.InferenceSession> {
  const b = new OnnxBuilder();
  const x = b.input("x", ONNX_TYPE.DOUBLE, ["A", transB ? "C" : "B"]);
  const y = b.input("y", ONNX_TYPE.DOUBLE, transB ? ["B", "C"] : ["B", "C"]);
  const c = b.op1("Gemm", [x, y], { transB: { i: transB ? 1 : 0 } });
  b.output(c, "out", ONNX_TYPE.DOUBLE, transB ? ["A", "B"] : ["A", "C"]);
  return await ort.InferenceSession.create(encodeModel(b.model(transB ? "xyt" : "xy")), {
    executionProviders: ["cpu"],
  });
}

/** Dense f64 products through onnxruntime (created once, then shared). */
export function ortGemm(): Promise<Gemm> {
  cached ??= (async () => {
    const ort = await loadOrt();
    const [xy, xyt] = [await session(ort, false), await session(ort, true)];
    const run = async (s: Ort.InferenceSession, x: Float64Array, xs: number[], y: Float64Array, ys: number[]) =>
      (await s.run({ x: new ort.Tensor("float64", x, xs), y: new ort.Tensor("float64", y, ys) })).out
        .data as Float64Array;
    return {
      xy: (x, y, a, b, c) => run(xy, x, [a, b], y, [b, c]),
      xyt: (x, y, a, b, c) => run(xyt, x, [a, c], y, [b, c]),
    };
  })();
  return cached;
}
