/**
 * The layering checks: builds the import graph of the project's .ts files and reports import circles and imports
 * that break the layer order declared in `layers.ts`. Pure functions over file texts, so they are testable.
 * @module
 */
import { dirname, join, normalize } from "node:path";
import { type ImportEdge, scanImports } from "./imports.ts";
import { type Layer, TEST_FILE, TEST_HELPER } from "./layers.ts";

/** An import between two project files (repo-relative paths). */
export interface Link extends ImportEdge {
  from: string;
  to: string;
}

/** Resolves each relative import of each file to a repo-relative path; bare and URL specifiers are not links. */
export function linksOf(files: ReadonlyMap<string, string>): Link[] {
  const links: Link[] = [];
  for (const [from, text] of files) {
    for (const edge of scanImports(text)) {
      if (!edge.specifier.startsWith("./") && !edge.specifier.startsWith("../")) continue;
      const to = normalize(join(dirname(from), edge.specifier));
      links.push({ ...edge, from, to });
    }
  }
  return links;
}

/** The layer owning a path (longest matching prefix), or undefined when no layer declares it. */
export function layerOf(path: string, layers: readonly Layer[]): Layer | undefined {
  let best: Layer | undefined;
  let bestLength = -1;
  for (const layer of layers) {
    for (const p of layer.paths) {
      const hit = p.endsWith("/") ? path.startsWith(p) : path === p;
      if (hit && p.length > bestLength) [best, bestLength] = [layer, p.length];
    }
  }
  return best;
}

/** What a file is for the rules: product code, a test helper or a test. */
export function roleOf(path: string): "product" | "helper" | "test" {
  if (TEST_FILE.test(path)) return "test";
  return TEST_HELPER.some((re) => re.test(path)) ? "helper" : "product";
}

/** Messages for every link that breaks the layer rules (see layers.ts), minus the allowed pairs. */
export function layerViolations(
  links: readonly Link[],
  layers: readonly Layer[],
  allowed: ReadonlySet<string> = new Set(),
): string[] {
  const out: string[] = [];
  for (const l of links) {
    if (allowed.has(`${l.from} -> ${l.to}`)) continue;
    const a = layerOf(l.from, layers);
    const b = layerOf(l.to, layers);
    const where = `${l.from}:${l.line} imports ${l.to}`;
    if (!a || !b) {
      out.push(`${where}, but ${a ? l.to : l.from} is in no layer: declare it in _tools/layers.ts`);
      continue;
    }
    const [ra, rb] = [roleOf(l.from), roleOf(l.to)];
    if (ra === "product" && rb !== "product") {
      out.push(`${where}: product code (layer ${a.name}) must not import a ${rb === "test" ? "test" : "test helper"}`);
      continue;
    }
    if (rb === "test" && ra !== "test") {
      out.push(`${where}: only tests may import a test file`);
      continue;
    }
    if (ra === "test" && rb === "helper") continue; // tests may use test helpers of any layer
    if (a.name !== b.name && b.level >= a.level) {
      out.push(
        `${where}: layer ${a.name} (level ${a.level}) may not import layer ${b.name} (level ${b.level}); ` +
          `expected only its own layer or lower`,
      );
    }
  }
  return out;
}

/**
 * Every import circle, one per strongly connected component, as a path `a -> b -> ... -> a` through real links.
 * Tarjan's algorithm, iterative so deep graphs cannot overflow the stack.
 */
export function importCycles(links: readonly Link[]): string[][] {
  const next = new Map<string, string[]>();
  for (const l of links) {
    if (l.from === l.to) continue;
    const list = next.get(l.from) ?? [];
    if (!list.includes(l.to)) list.push(l.to);
    next.set(l.from, list);
  }
  const nodes = [...new Set([...next.keys(), ...[...next.values()].flat()])].sort();
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: [string, number][] = [[root, 0]];
    while (work.length > 0) {
      const top = work[work.length - 1];
      const [v, i] = top;
      if (i === 0) {
        index.set(v, counter);
        low.set(v, counter++);
        stack.push(v);
        onStack.add(v);
      }
      const succ = next.get(v) ?? [];
      if (i < succ.length) {
        top[1]++;
        const w = succ[i];
        if (!index.has(w)) work.push([w, 0]);
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1][0];
        low.set(parent, Math.min(low.get(parent)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== v);
        if (component.length > 1) components.push(component.sort());
      }
    }
  }
  return components.map((c) => cyclePath(c, next));
}

/** A shortest circle through the first file of a component, staying inside it (BFS back to the start). */
function cyclePath(component: string[], next: Map<string, string[]>): string[] {
  const inside = new Set(component);
  const start = component[0];
  const from = new Map<string, string>();
  const queue = [start];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of next.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const path = [start];
        for (let u = v; u !== start; u = from.get(u)!) path.splice(1, 0, u);
        return [...path, start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [...component, start];
}

/** Whether `to` is reachable from `from` along the links (a link a → b closes a circle when b reaches a). */
export function reaches(links: readonly Link[], from: string, to: string): boolean {
  const next = new Map<string, string[]>();
  for (const l of links) next.set(l.from, [...(next.get(l.from) ?? []), l.to]);
  const seen = new Set([from]);
  const stack = [from];
  while (stack.length > 0) {
    for (const w of next.get(stack.pop()!) ?? []) {
      if (w === to) return true;
      if (!seen.has(w)) {
        seen.add(w);
        stack.push(w);
      }
    }
  }
  return false;
}
