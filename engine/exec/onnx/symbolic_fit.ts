/**
 * The arithmetic of symbolic sizes (symbolic.ts): integer multilinear polynomials in a few named sizes (batch, length,
 * cache capacity), fitted from traces at a grid of probe sizes, and a graph's numbers split from its structure so that
 * two traces of one model at different sizes can be compared number by number.
 *
 * A number of a traced graph that depends on the sizes (a shape, a reshape target, a slice bound) is, in every model
 * this engine traces, a product of sizes and constants plus an offset (`B·L·H`, `L − 1`): a multilinear polynomial.
 * Two probe values per size determine it; a further probe and the requested sizes themselves check it.
 *
 * @example
 * ```ts
 * const grid = probeGrid(["B", "L"]); // 4 grid points, then 1 check point
 * const p = fitPoly(grid.points.slice(0, 4).map(([b, l]) => 3 * b * l - 1), grid); // 3·B·L − 1
 * polyAt(p, [2, 128]); // 767
 * ```
 * @module
 */
import { createHash } from "node:crypto";
import type { Graph } from "../../graph/graph.ts";

/**
 * An integer multilinear polynomial in k sizes: coefficient `c[m]` multiplies the product of the sizes whose bits are
 * set in `m` (`c[0]` is the constant).
 */
export type Poly = readonly number[];

/** Probe values of each size (lo, hi, check): primes that differ from each other and from small model constants. */
const PROBES = [[7, 11, 29], [13, 17, 31], [19, 23, 37], [41, 43, 47]];

/** The probe sizes of a symbol list: the 2^k grid points (bit i of the index: size i at hi), then a check point. */
export interface ProbeGrid {
  symbols: readonly string[];
  lo: readonly number[];
  hi: readonly number[];
  /** 2^k grid points, then the check point. */
  points: readonly (readonly number[])[];
}

/**
 * The probe grid of `symbols`. Size i probes at the i-th row of {@link PROBES}: a later size's probes are larger
 * than an earlier's (name a cache capacity after the lengths it must hold).
 */
export function probeGrid(symbols: readonly string[]): ProbeGrid {
  const k = symbols.length;
  if (k > PROBES.length) throw new Error(`symbolic sizes: at most ${PROBES.length} sizes, got ${k}`);
  const lo = PROBES.slice(0, k).map((p) => p[0]), hi = PROBES.slice(0, k).map((p) => p[1]);
  const points: number[][] = [];
  for (let m = 0; m < 1 << k; m++) points.push(lo.map((v, i) => (m >> i) & 1 ? hi[i] : v));
  points.push(PROBES.slice(0, k).map((p) => p[2]));
  return { symbols, lo, hi, points };
}

/**
 * The polynomial through `values` at the grid points of `grid` (one value per grid point, in its order); undefined
 * when a coefficient is not an integer (the number is no polynomial of this kind).
 */
export function fitPoly(values: readonly number[], grid: ProbeGrid): Poly | undefined {
  const k = grid.lo.length;
  const c = values.slice(0, 1 << k);
  if (c.every((v) => Object.is(v, c[0]))) return c.map((v, m) => (m ? 0 : v)); // any constant, NaN and ±0 too
  // One size at a time: a + b·x through (lo, f_lo), (hi, f_hi) → b at the bit set, a at the bit clear.
  for (let i = 0; i < k; i++) {
    const bit = 1 << i, lo = grid.lo[i], hi = grid.hi[i];
    for (let m = 0; m < 1 << k; m++) {
      if (m & bit) continue;
      const b = (c[m | bit] - c[m]) / (hi - lo);
      c[m] = c[m] - b * lo;
      c[m | bit] = b;
    }
  }
  return c.every(Number.isSafeInteger) ? c : undefined;
}

/** The polynomial's value at `sizes`. */
export function polyAt(p: Poly, sizes: readonly number[]): number {
  if (isConstant(p)) return p[0];
  let s = 0;
  for (let m = 0; m < p.length; m++) {
    if (!p[m]) continue;
    let t = p[m];
    for (let i = 0; i < sizes.length; i++) if ((m >> i) & 1) t *= sizes[i];
    s += t;
  }
  return s;
}

/** Whether the polynomial is a constant. */
export function isConstant(p: Poly): boolean {
  return p.every((c, m) => m === 0 || c === 0);
}

/** The index of the size the polynomial is exactly (1 · that size), or -1. */
export function pureSymbol(p: Poly): number {
  const terms = p.flatMap((c, m) => (c ? [m] : []));
  if (terms.length !== 1 || p[terms[0]] !== 1) return -1;
  const m = terms[0];
  return m && (m & (m - 1)) === 0 ? Math.log2(m) : -1;
}

/** The polynomial in words, e.g. `B*L*9`, `L-1` (an ONNX dim_param names a symbolic dimension with it). */
export function polyName(p: Poly, symbols: readonly string[]): string {
  let s = "";
  for (let m = 1; m < p.length; m++) {
    if (!p[m]) continue;
    const syms = symbols.filter((_, i) => (m >> i) & 1).join("*"), c = Math.abs(p[m]);
    s += `${p[m] < 0 ? "-" : "+"}${c === 1 ? syms : `${c}*${syms}`}`;
  }
  if (p[0]) s += p[0] < 0 ? `${p[0]}` : `+${p[0]}`;
  return s.replace(/^\+/, "") || "0";
}

/**
 * The axis along which `data` (row-major, of `dims`) counts: element i is its coordinate on that axis (0, 1, 2, ...
 * along it, the same across the others), or -1. Such a constant (a range, a mask's row or column indices, cache slot
 * indices) is computed at run time for any size.
 */
export function iotaAxis(data: ArrayLike<number>, dims: readonly number[]): number {
  if (data.length < 2) return -1;
  for (let a = 0; a < dims.length; a++) {
    if (dims[a] < 2) continue;
    let inner = 1;
    for (let k = a + 1; k < dims.length; k++) inner *= dims[k];
    let ok = true;
    for (let i = 0; ok && i < data.length; i++) ok = data[i] === Math.floor(i / inner) % dims[a];
    if (ok) return a;
  }
  return -1;
}

/** A graph as structure and numbers: two traces of one model at different sizes share the structure. */
export interface Flat {
  /** The graph with every number (and every run of digits in a name) replaced by `#`. */
  skeleton: string;
  /** The numbers, in the order of their places in the skeleton. */
  nums: number[];
}

/**
 * Constants with more elements than this are flattened as a digest of their data, not as numbers: their values never
 * follow a polynomial of the sizes (a constant whose data changes with the sizes then changes the structure, and the
 * graph has no symbolic model), and as numbers they cost the fit one polynomial per element (OFT's skew maps with
 * blocks of 32: 508K elements per adapted module, a JS heap past 4 GB over a tiny model's probes).
 */
export const DIGEST_ABOVE = 256;

/** SHA-256 (hex) of a constant's values as float64 bytes. */
function digestOf(data: ArrayLike<number>): string {
  const f = data instanceof Float64Array ? data : Float64Array.from(data);
  return createHash("sha256").update(new Uint8Array(f.buffer, f.byteOffset, f.byteLength)).digest("hex");
}

/**
 * Splits `graph` into structure and numbers (values, nodes with their attributes, names, checkpoints). A constant's
 * data that counts along an axis is written as that axis; one of more than {@link DIGEST_ABOVE} elements as the
 * SHA-256 of its values (in the skeleton, letters only: its digits are not taken for numbers).
 */
export function flattenGraph(graph: Graph): Flat {
  const nums: number[] = [];
  const str = (s: string) =>
    s.replace(/\d+/g, (d) => {
      nums.push(Number(d));
      return "#";
    });
  const replacer = (_k: string, v: unknown): unknown => {
    if (typeof v === "number") {
      nums.push(v);
      return "#";
    }
    if (typeof v === "string") return str(v);
    if (v instanceof Float64Array) return Array.from(v);
    return v;
  };
  // A constant that counts along an axis is written as that axis: its data follows from its shape.
  const values = graph.values.map((v) => {
    if (v.kind !== "const") return v;
    const axis = iotaAxis(v.data!, v.shape);
    if (axis >= 0) return { ...v, data: undefined, iota: `axis ${"abcdefgh"[axis]}` };
    if (v.data!.length <= DIGEST_ABOVE) return v;
    // Hex digits mapped to letters, so the digest's digits are not split out as numbers.
    return { ...v, data: undefined, digest: digestOf(v.data!).replace(/\d/g, (d) => "ghijklmnop"[Number(d)]) };
  });
  const parts = [
    JSON.stringify(values, replacer),
    JSON.stringify(graph.nodes, replacer),
    JSON.stringify([...graph.inputs], replacer),
    JSON.stringify([...graph.params], replacer),
    JSON.stringify([...graph.outputs], replacer),
    JSON.stringify(graph.checkpoints, replacer),
  ];
  return { skeleton: parts.join("\n"), nums };
}

/**
 * Fits every number of the probe traces (one {@link Flat} per probe point of `grid`, the check point last): the
 * polynomials, or why they do not exist (structure that changes with the sizes, a number that is no polynomial).
 */
export function fitFlats(flats: readonly Flat[], grid: ProbeGrid): { polys: Poly[] } | { why: string } {
  const n = flats[0].nums.length, check = grid.points.length - 1;
  for (const f of flats) {
    if (f.skeleton !== flats[0].skeleton || f.nums.length !== n) {
      return { why: "the graph's structure changes with the sizes" };
    }
  }
  const polys: Poly[] = [];
  const col = new Array<number>(check);
  for (let j = 0; j < n; j++) {
    for (let p = 0; p < check; p++) col[p] = flats[p].nums[j];
    const poly = fitPoly(col, grid);
    if (!poly || !Object.is(polyAt(poly, grid.points[check]), flats[check].nums[j])) {
      return { why: `a number of the graph (${col.join(", ")} at the probes) is no polynomial of the sizes` };
    }
    polys.push(poly);
  }
  return { polys };
}

/** Whether `flat` is the fitted graph at `sizes`: the same structure and every number its polynomial's value. */
export function flatMatches(flat: Flat, skeleton: string, polys: readonly Poly[], sizes: readonly number[]): boolean {
  if (flat.skeleton !== skeleton || flat.nums.length !== polys.length) return false;
  for (let j = 0; j < polys.length; j++) if (!Object.is(polyAt(polys[j], sizes), flat.nums[j])) return false;
  return true;
}
