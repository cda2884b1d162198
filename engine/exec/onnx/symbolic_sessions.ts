/**
 * The executor's sessions of symbolic models (symbolic.ts): a compile with symbolic sizes takes the session of an
 * earlier compile when its graph is that graph at other sizes, else builds the symbolic model and one new session;
 * a graph with no symbolic model is left to a session of its own shape (the reason is counted).
 *
 * @example
 * ```ts
 * const cache = new SymbolicSessions((model, lowered) => createSession(model, lowered));
 * const hit = cache.get(graph, { outputs: ["loss"], symbolic }, lowerOpts); // undefined: build a per-shape session
 * ```
 * @module
 */
import type { Graph } from "../../graph/graph.ts";
import type { CompileOptions } from "../executor.ts";
import type { LoweredGraph, LowerOptions } from "./lower.ts";
import type { ModelDef } from "./proto.ts";
import { buildSymbolic, instantiate, matchSymbolic, type SymbolicModel } from "./symbolic.ts";
import { flattenGraph } from "./symbolic_fit.ts";

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

/** Symbolic models and their sessions, `S` (see the module doc). */
export class SymbolicSessions<S> {
  private readonly entries: { sm: Omit<SymbolicModel, "model">; outputs: string; session: Promise<S> }[] = [];

  /** `create` builds the session of a symbolic model; `counts` (one or more) count reuses and fallbacks. */
  constructor(
    private readonly create: (model: ModelDef, lowered: Lowered) => Promise<S>,
    private readonly counts: readonly SessionCounts[],
  ) {}

  /**
   * The session and lowered names and shapes of `graph` compiled with `opts.symbolic`, or undefined when it has none or
   * no symbolic model.
   */
  get(
    graph: Graph,
    opts: CompileOptions,
    lowerOpts: LowerOptions,
  ): { lowered: Lowered; session: Promise<S> } | undefined {
    const sym = opts.symbolic;
    if (!sym) return undefined;
    const flat = flattenGraph(graph), outputs = JSON.stringify(opts.outputs ?? null);
    const symbols = Object.keys(sym.sizes), sizes = symbols.map((s) => sym.sizes[s]);
    for (const e of this.entries) {
      if (e.outputs === outputs && e.sm.symbols.join() === symbols.join() && matchSymbolic(e.sm, flat, sizes)) {
        for (const c of this.counts) c.reused++;
        return { lowered: instantiate(e.sm, sizes), session: e.session };
      }
    }
    const built = buildSymbolic(graph, sym, lowerOpts, flat);
    if ("why" in built) {
      for (const c of this.counts) c.fallbacks.push(built.why);
      return undefined;
    }
    const { model, ...sm } = built;
    const lowered = instantiate(sm, sizes);
    const entry = { sm, outputs, session: this.create(model, lowered) };
    this.entries.push(entry);
    // A failed session is not kept: the next compile tries again (and fails with the same error, or builds it).
    entry.session.catch(() => this.entries.splice(this.entries.indexOf(entry), 1));
    return { lowered, session: entry.session };
  }
}
