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
  const placed: { off: number; size: number; a: number; b: number }[][] = [];
  const placements = new Array<Placement>(items.length);
  const arenaBytes: number[] = [];
  for (const i of order) {
    const it = items[i];
    if (it.size > cap) throw new Error(`internal: a ${it.size}-byte item does not fit an arena of ${cap} bytes`);
    for (let k = 0;; k++) {
      if (k === placed.length) {
        placed.push([]);
        arenaBytes.push(0);
      }
      const clash = placed[k].filter((p) => p.a <= it.b && it.a <= p.b).sort((x, y) => x.off - y.off);
      let off = 0;
      for (const p of clash) {
        if (off + it.size <= p.off) break;
        off = Math.max(off, p.off + p.size);
      }
      if (off + it.size > cap) continue;
      placed[k].push({ off, size: it.size, a: it.a, b: it.b });
      placements[i] = { arena: k, offset: off };
      arenaBytes[k] = Math.max(arenaBytes[k], off + it.size);
      break;
    }
  }
  return { placements, arenaBytes };
}
