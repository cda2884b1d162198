/**
 * The executor's sessions of symbolic models (symbolic.ts): a compile with symbolic sizes takes the session of an
 * earlier compile when its graph is that graph at other sizes, else builds the symbolic model (or loads it from the
 * on-disk cache of symbolic_cache.ts, when one is given) and one new session; a graph with no symbolic model is left
 * to a session of its own shape (the reason is counted).
 *
 * @example
 * ```ts
 * const cache = new SymbolicSessions((bytes, nodes, lowered) => createSession(bytes, lowered), [counts]);
 * const hit = await cache.get(graph, { outputs: ["loss"], symbolic }, lowerOpts); // undefined: build a per-shape session
 * ```
 * @module
 */
import type { Graph } from "../../graph/graph.ts";
import type { CompileOptions } from "../executor.ts";
import type { LoweredGraph, LowerOptions } from "./lower.ts";
import { encodeModel } from "./proto.ts";
import { buildSymbolic, instantiate, matchSymbolic, type SymbolicModel } from "./symbolic.ts";
import { flattenGraph } from "./symbolic_fit.ts";
import { readSymbolic, type SymbolicEntry, symbolicKey, writeSymbolic } from "./symbolic_cache.ts";
import { mark } from "../../util/timings.ts";

/** A lowered graph's names and shapes at one size (its model is in the session). */
export type Lowered = Omit<LoweredGraph, "model">;

/** Counters of the sessions an executor built. */
export interface SessionCounts {
  /** Sessions created (each costs seconds at 135M). */
  created: number;
  /** Compiles served by the session of an earlier compile at other sizes. */
  reused: number;
  /** Why graphs compiled with `symbolic` sizes got a session of their own sizes instead. */
  fallbacks: string[];
}

/** Where symbolic models are cached on disk (symbolic_cache.ts). */
export interface SymbolicDiskCache {
  dir: string;
  /** Models with fewer nodes are not written (they build in well under a second). */
  minNodes: number;
  /** Entries kept (least recently used removed). */
  maxEntries?: number;
}

/** Symbolic models and their sessions, `S` (see the module doc). */
export class SymbolicSessions<S> {
  private readonly entries: { sm: Omit<SymbolicModel, "model">; outputs: string; session: Promise<S> }[] = [];

  /**
   * `create` builds the session of a symbolic model (its encoded bytes and node count); `counts` (one or more) count
   * reuses and fallbacks; `disk` (called once per compile) is the on-disk cache, or undefined for none.
   */
  constructor(
    private readonly create: (bytes: Uint8Array, nodes: number, lowered: Lowered) => Promise<S>,
    private readonly counts: readonly SessionCounts[],
    private readonly disk: () => SymbolicDiskCache | undefined = () => undefined,
  ) {}

  /**
   * The session and lowered names and shapes of `graph` compiled with `opts.symbolic`, or undefined when it has none or
   * no symbolic model.
   */
  async get(
    graph: Graph,
    opts: CompileOptions,
    lowerOpts: LowerOptions,
  ): Promise<{ lowered: Lowered; session: Promise<S> } | undefined> {
    const sym = opts.symbolic;
    if (!sym) return undefined;
    const flat = flattenGraph(graph), outputs = JSON.stringify(opts.outputs ?? null);
    const symbols = Object.keys(sym.sizes), sizes = symbols.map((s) => sym.sizes[s]);
    mark("symbolic: flatten the trace");
    for (const e of this.entries) {
      if (e.outputs === outputs && e.sm.symbols.join() === symbols.join() && matchSymbolic(e.sm, flat, sizes)) {
        for (const c of this.counts) c.reused++;
        mark("symbolic: matched an earlier model");
        return { lowered: instantiate(e.sm, sizes), session: e.session };
      }
    }
    const built = await this.build(graph, opts, lowerOpts, flat);
    if ("why" in built) {
      for (const c of this.counts) c.fallbacks.push(built.why);
      return undefined;
    }
    const { sm, bytes, nodes } = built;
    const lowered = instantiate(sm, sizes);
    const entry = { sm, outputs, session: this.create(bytes, nodes, lowered) };
    this.entries.push(entry);
    // A failed session is not kept: the next compile tries again (and fails with the same error, or builds it).
    entry.session.catch(() => this.entries.splice(this.entries.indexOf(entry), 1));
    return { lowered, session: entry.session };
  }

  /** The symbolic model of `graph` (trace `flat`): from the disk cache when it holds it, else built (and cached). */
  private async build(
    graph: Graph,
    opts: CompileOptions,
    lowerOpts: LowerOptions,
    flat: ReturnType<typeof flattenGraph>,
  ): Promise<SymbolicEntry> {
    const sym = opts.symbolic!, sizes = Object.keys(sym.sizes).map((s) => sym.sizes[s]);
    const disk = lowerOpts.initializers ? undefined : this.disk();
    const what = JSON.stringify({ outputs: opts.outputs ?? null, lower: lowerOpts });
    const key = disk && await symbolicKey(flat, sym.sizes, what);
    if (disk && key) {
      const hit = await readSymbolic(disk.dir, key);
      // The key holds the trace itself; the match is a check of the entry's own consistency.
      if (hit && ("why" in hit || matchSymbolic(hit.sm, flat, sizes))) {
        mark("symbolic: loaded from the cache");
        return hit;
      }
    }
    const built = buildSymbolic(graph, sym, lowerOpts, flat);
    let entry: SymbolicEntry;
    if ("why" in built) entry = built;
    else {
      const { model, ...sm } = built;
      entry = { sm, bytes: encodeModel(model), nodes: model.graph.nodes.length };
    }
    if (disk && key && ("why" in entry || entry.nodes >= disk.minNodes)) {
      await writeSymbolic(disk.dir, key, entry, disk.maxEntries);
    }
    return entry;
  }
}
