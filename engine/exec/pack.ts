/**
 * Packing byte ranges by liveness: each item (a size and the steps it is live over) gets an arena and an
 * offset such that no two items live at the same step overlap. Greedy: largest first, each at the lowest
 * offset free over its interval in the first arena where it fits under the cap. With no cap this is one
 * arena, the layout the planner has always made.
 * @module
 */

/** One thing to place: `size` bytes live from step `a` to step `b` (inclusive). */
export interface PackItem {
  readonly size: number;
  readonly a: number;
  readonly b: number;
}

/** Where an item went. */
export interface Placement {
  readonly arena: number;
  readonly offset: number;
}

/** The result of {@link packIntervals}: a placement per item (in the items' order) and each arena's bytes. */
export interface Packing {
  readonly placements: Placement[];
  readonly arenaBytes: number[];
}

/**
 * Places `items` (sizes already aligned) into arenas of at most `cap` bytes each (default unbounded: one
 * arena). Throws naming the item when one is larger than the cap.
 */
export function packIntervals(items: readonly PackItem[], cap = Infinity): Packing {
  const order = items.map((_, i) => i).sort((x, y) => items[y].size - items[x].size || items[x].a - items[y].a);
  // Per arena, the placed items as parallel typed arrays kept sorted by offset (ties in placement order), so
  // finding the lowest free offset is one scan with no sort.
  const arenas: { a: Float64Array; b: Float64Array; off: Float64Array; size: Float64Array; n: number }[] = [];
  const placements = new Array<Placement>(items.length);
  const arenaBytes: number[] = [];
  const n = items.length;
  for (const i of order) {
    const it = items[i];
    if (it.size > cap) throw new Error(`internal: a ${it.size}-byte item does not fit an arena of ${cap} bytes`);
    for (let k = 0;; k++) {
      if (k === arenas.length) {
        const f = () => new Float64Array(n);
        arenas.push({ a: f(), b: f(), off: f(), size: f(), n: 0 });
        arenaBytes.push(0);
      }
      const p = arenas[k];
      let off = 0;
      for (let j = 0; j < p.n; j++) {
        if (p.a[j] > it.b || it.a > p.b[j]) continue; // not live at a common step
        if (off + it.size <= p.off[j]) break;
        off = Math.max(off, p.off[j] + p.size[j]);
      }
      if (off + it.size > cap) continue;
      let at = p.n;
      while (at > 0 && p.off[at - 1] > off) at--;
      for (const arr of [p.a, p.b, p.off, p.size]) arr.copyWithin(at + 1, at, p.n);
      p.a[at] = it.a;
      p.b[at] = it.b;
      p.off[at] = off;
      p.size[at] = it.size;
      p.n++;
      placements[i] = { arena: k, offset: off };
      arenaBytes[k] = Math.max(arenaBytes[k], off + it.size);
      break;
    }
  }
  return { placements, arenaBytes };
}
