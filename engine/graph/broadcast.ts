/**
 * Broadcasting rules (numpy style) shared by shape inference, reference kernels and WGSL lowerings.
 * @module
 */
import { stridesOf } from "./types.ts";

/** The broadcast shape of several shapes; throws naming both shapes when they do not broadcast. */
export function broadcastShapes(...shapes: (readonly number[])[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out = new Array<number>(rank).fill(1);
  for (const s of shapes) {
    for (let i = 0; i < s.length; i++) {
      const o = rank - s.length + i;
      const d = s[i];
      if (out[o] === 1) out[o] = d;
      else if (d !== 1 && d !== out[o]) {
        throw new Error(
          `shapes ${shapes.map((x) => `[${x.join(", ")}]`).join(" and ")} do not broadcast (axis ${o}: ${
            out[o]
          } vs ${d})`,
        );
      }
    }
  }
  return out;
}

/**
 * Strides to read an input of shape `inShape` while walking `outShape` row-major: 0 on broadcast axes.
 */
export function broadcastStrides(inShape: readonly number[], outShape: readonly number[]): number[] {
  const st = stridesOf(inShape);
  const res = new Array<number>(outShape.length).fill(0);
  const off = outShape.length - inShape.length;
  for (let i = 0; i < inShape.length; i++) res[off + i] = inShape[i] === 1 ? 0 : st[i];
  return res;
}

/** Axes of `outShape` that were broadcast from `inShape` (to sum a gradient back). */
export function broadcastAxes(inShape: readonly number[], outShape: readonly number[]): number[] {
  const axes: number[] = [];
  const off = outShape.length - inShape.length;
  for (let i = 0; i < outShape.length; i++) {
    if (i < off || (inShape[i - off] === 1 && outShape[i] !== 1)) axes.push(i);
  }
  return axes;
}

/** Maps a flat index of `outShape` to the flat index of each input through its broadcast strides. */
export function makeIndexer(outShape: readonly number[], inStrides: number[][]): (i: number) => number[] {
  const rank = outShape.length;
  return (flat: number) => {
    const res = new Array<number>(inStrides.length).fill(0);
    let rem = flat;
    for (let d = rank - 1; d >= 0; d--) {
      const c = rem % outShape[d];
      rem = Math.floor(rem / outShape[d]);
      for (let k = 0; k < inStrides.length; k++) res[k] += c * inStrides[k][d];
    }
    return res;
  };
}

/** Normalizes possibly negative axes against a rank, checking range; returns sorted unique axes. */
export function normAxes(axes: readonly number[], rank: number): number[] {
  const out = new Set<number>();
  for (const a of axes) {
    const n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank) throw new Error(`axis ${a} is out of range for rank ${rank}`);
    out.add(n);
  }
  return [...out].sort((x, y) => x - y);
}
