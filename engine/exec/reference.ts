/**
 * The reference executor: runs any graph in plain TypeScript with f64 math and simple loops.
 * It is the oracle for every WGSL kernel and the fallback where no GPU adapter exists.
 *
 * @example
 * ```ts
 * const ex = new ReferenceExecutor();
 * ex.setParam("w", [1, 2, 3, 4], [2, 2]);
 * const step = await ex.compile(graph);
 * const { y } = await step.run({ x: [1, 1] });
 * ```
 * @module
 */
import { completeFeeds, type Graph } from "../graph/graph.ts";
import { getOp, type RefTensor } from "../graph/op.ts";
import { type DType, fmtInfo, numel } from "../graph/types.ts";
import { planGraph } from "./plan.ts";
import type { CompiledGraph, CompileOptions, Executor, HostArray, StepStats } from "./executor.ts";
import { roundTo } from "./dtype.ts";

/** The f64 reference executor. */
export class ReferenceExecutor implements Executor {
  readonly name = "reference";
  readonly store = new Map<string, RefTensor>();

  setParam(name: string, data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): void {
    if (data.length !== numel(shape)) {
      throw new Error(`param "${name}": ${data.length} values for shape [${shape.join(", ")}] (${numel(shape)})`);
    }
    this.store.set(name, { data: roundTo(Float64Array.from(data), dtype), shape: [...shape], dtype });
  }

  getParam(name: string): Promise<HostArray> {
    const t = this.store.get(name);
    if (!t) return Promise.reject(new Error(`no param "${name}" in the store`));
    return Promise.resolve(Float64Array.from(t.data));
  }

  hasParam(name: string): boolean {
    return this.store.has(name);
  }

  dispose(): void {
    this.store.clear();
  }

  compile(graph: Graph, opts: CompileOptions = {}): Promise<CompiledGraph> {
    const plan = planGraph(graph, opts.outputs, 4);
    const store = this.store;
    const stats: StepStats = { dispatches: 0, submits: 0, bytesReadBack: 0, arenaBytes: plan.arenaBytes };
    const run = (feeds: Record<string, ArrayLike<number>>, fetch?: readonly string[]) => {
      const vals = new Array<RefTensor | undefined>(graph.values.length);
      for (const [name, id] of graph.inputs) {
        const v = graph.values[id];
        const f = feeds[name];
        if (f === undefined) {
          if (plan.order.some((n) => graph.nodes[n].inputs.includes(id))) {
            throw new Error(`missing feed "${name}" (${fmtInfo(v)})`);
          }
          continue;
        }
        if (f.length !== numel(v.shape)) {
          throw new Error(`feed "${name}": expected ${numel(v.shape)} values for ${fmtInfo(v)}, got ${f.length}`);
        }
        vals[id] = { data: roundTo(Float64Array.from(f), v.dtype), shape: v.shape, dtype: v.dtype };
      }
      for (const [name, id] of graph.params) {
        const v = graph.values[id];
        const p = store.get(name);
        if (!p) {
          if (plan.order.some((n) => graph.nodes[n].inputs.includes(id))) {
            throw new Error(`param "${name}" (${fmtInfo(v)}) is not in the store; set it first`);
          }
          continue;
        }
        if (p.dtype !== v.dtype || p.shape.join() !== v.shape.join()) {
          throw new Error(`param "${name}" is stored as ${fmtInfo(p)} but the graph declares ${fmtInfo(v)}`);
        }
        vals[id] = p;
      }
      for (const v of graph.values) {
        if (v.kind === "const") vals[v.id] = { data: v.data!, shape: v.shape, dtype: v.dtype };
      }
      for (const ni of plan.order) {
        const n = graph.nodes[ni];
        const def = getOp(n.op);
        const ins = n.inputs.map((i) => vals[i]!);
        const outInfos = n.outputs.map((o) => graph.values[o]);
        const res = def.ref(ins, n.attrs, outInfos);
        n.outputs.forEach((o, k) => {
          const info = graph.values[o];
          vals[o] = { data: roundTo(res[k], info.dtype), shape: info.shape, dtype: info.dtype };
        });
      }
      const out: Record<string, HostArray> = {};
      for (const name of fetch ?? [...plan.outputs.keys()]) {
        const id = plan.outputs.get(name);
        if (id === undefined) throw new Error(`"${name}" is not an output of this compiled graph`);
        out[name] = Float64Array.from(vals[id]!.data);
      }
      return Promise.resolve(out);
    };
    return Promise.resolve({
      run: (feeds, fetch) => {
        try {
          return run(completeFeeds(graph, feeds), fetch);
        } catch (e) {
          return Promise.reject(e);
        }
      },
      stats,
    });
  }
}
