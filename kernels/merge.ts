/**
 * Horizontal merging of compute kernels: several independent launches with the same number of threads a workgroup
 * become one dispatch (see engine/exec/batch.ts for which launches may merge). Each kernel's module-scope names get a
 * suffix, its entry becomes an ordinary function taking the workgroup id, local id and grid it had as its own
 * dispatch, and a new entry hands each range of workgroups to its kernel. Workgroup ids and grid sizes are uniform,
 * so barriers inside the kernels stay in uniform control flow.
 *
 * Only kernels whose entry is `main` with the builtins workgroup_id, local_invocation_id and num_workgroups (any of
 * them) and whose workgroup arrays have a known size can merge; {@link parseKernel} returns undefined for others.
 * @module
 */

/** A kernel taken apart for merging. */
export interface ParsedKernel {
  /** Threads a workgroup: x, y, z. */
  readonly size: readonly [number, number, number];
  /** Storage declarations by binding index: variable name and element type text. */
  readonly bindings: readonly { readonly name: string; readonly type: string }[];
  /** Bytes of workgroup memory. */
  readonly workgroupBytes: number;
  /** The source without directives and binding declarations, entry attributes removed. */
  readonly body: string;
  readonly directives: readonly string[];
  /** Module-scope names (functions, workgroup variables, constants) to suffix. */
  readonly names: readonly string[];
  /** Names of the entry's builtin parameters. */
  readonly params: { readonly wid?: string; readonly lid?: string; readonly nwg?: string };
}

const ENTRY =
  /@compute\s*@workgroup_size\(\s*(\d+)u?\s*(?:,\s*(\d+)u?\s*)?(?:,\s*(\d+)u?\s*)?\)\s*fn\s+main\s*\(((?:[^()]|\([^()]*\))*)\)/g;
const BINDING = /@group\(0\)\s*@binding\((\d+)\)\s*var<storage,\s*read_write>\s*(\w+)\s*:\s*([^;]+);/g;
const WG_VAR = /var<workgroup>\s+(\w+)\s*:\s*array<\s*(f32|u32|i32|vec4<f32>|vec2<u32>)\s*,\s*(\d+)u?\s*>\s*;/g;
const BYTES: Record<string, number> = { f32: 4, u32: 4, i32: 4, "vec4<f32>": 16, "vec2<u32>": 8 };
const BUILTINS: Record<string, "wid" | "lid" | "nwg"> = {
  workgroup_id: "wid",
  local_invocation_id: "lid",
  num_workgroups: "nwg",
};

const count = (s: string, re: RegExp) => (s.match(re) ?? []).length;

/** Takes `code` apart for merging, or undefined when it cannot merge (other builtins, unknown workgroup arrays, …). */
export function parseKernel(code: string, entry = "main"): ParsedKernel | undefined {
  if (entry !== "main") return undefined;
  const entries = [...code.matchAll(ENTRY)];
  if (entries.length !== 1 || count(code, /@compute/g) !== 1) return undefined;
  const [whole, x, y, z, paramText] = entries[0];
  const params: { wid?: string; lid?: string; nwg?: string } = {};
  for (const p of paramText.split(",").map((s) => s.trim()).filter(Boolean)) {
    const m = /^@builtin\((\w+)\)\s*(\w+)\s*:\s*vec3<u32>$/.exec(p);
    const key = m ? BUILTINS[m[1]] : undefined;
    if (!m || !key) return undefined;
    params[key] = m[2];
  }
  const bindings: { name: string; type: string }[] = [];
  const found = [...code.matchAll(BINDING)];
  if (found.length !== count(code, /@binding/g) || count(code, /@group/g) !== found.length) return undefined;
  for (const m of found) {
    const i = Number(m[1]);
    if (bindings[i]) return undefined;
    bindings[i] = { name: m[2], type: m[3].trim() };
  }
  if (bindings.length !== found.length) return undefined; // binding indices must be 0..n-1
  const wgVars = [...code.matchAll(WG_VAR)];
  if (wgVars.length !== count(code, /var<workgroup>/g)) return undefined;
  const workgroupBytes = wgVars.reduce((a, m) => a + BYTES[m[2]] * Number(m[3]), 0);
  const directives: string[] = [];
  let body = code.replace(/^\s*(enable|requires|diagnostic)\b[^;]*;\s*$/gm, (d) => (directives.push(d.trim()), ""));
  body = body.replace(BINDING, "").replace(whole, `fn main(${paramText})`);
  const names = new Set<string>(wgVars.map((m) => m[1]));
  for (const m of body.matchAll(/\bfn\s+(\w+)\s*\(/g)) names.add(m[1]);
  for (const m of body.matchAll(/\b(?:const|alias|struct|override)\s+(\w+)/g)) names.add(m[1]);
  for (const m of body.matchAll(/\bvar<private>\s+(\w+)/g)) names.add(m[1]);
  return {
    size: [Number(x), Number(y ?? 1), Number(z ?? 1)],
    bindings,
    workgroupBytes,
    body,
    directives,
    names: [...names],
    params,
  };
}

/** Threads a workgroup of a parsed kernel. */
export function threadsOf(k: ParsedKernel): number {
  return k.size[0] * k.size[1] * k.size[2];
}

const rename = (s: string, from: string, to: string) => s.replace(new RegExp(`(?<![\\w.])${from}(?!\\w)`, "g"), to);

/** One kernel of a merge: its parse, its grid, and the merged binding index of each of its bindings. */
export interface MergePart {
  readonly kernel: ParsedKernel;
  readonly workgroups: readonly [number, number, number];
  readonly bindingMap: readonly number[];
}

/**
 * The WGSL of `parts` merged into one kernel over `total` workgroups laid out as `[gx, gy]` (linear index
 * `x + y·gx`); merged binding j is declared as `mb_<j>` with element type `types[j]`.
 */
export function mergeKernels(parts: readonly MergePart[], types: readonly string[]): string {
  const threads = threadsOf(parts[0].kernel);
  const out: string[] = [];
  const directives = new Set(parts.flatMap((p) => p.kernel.directives));
  out.push(...directives);
  types.forEach((t, j) => out.push(`@group(0) @binding(${j}) var<storage, read_write> mb_${j}: ${t};`));
  const calls: string[] = [];
  let base = 0;
  parts.forEach((p, k) => {
    const kn = p.kernel;
    if (threadsOf(kn) !== threads) throw new Error(`merging kernels of ${threadsOf(kn)} and ${threads} threads`);
    let body = kn.body;
    for (const n of kn.names) body = rename(body, n, `${n}_m${k}`);
    kn.bindings.forEach((b, i) => (body = rename(body, b.name, `mb_${p.bindingMap[i]}`)));
    out.push(body);
    const [X, Y, Z] = p.workgroups;
    const [sx, sy] = kn.size;
    const W = X * Y * Z;
    const args: string[] = [];
    const byParam = new Map<string, string>();
    if (kn.params.wid) byParam.set(kn.params.wid, `vec3<u32>(q % ${X}u, (q / ${X}u) % ${Y}u, q / ${X * Y}u)`);
    if (kn.params.lid) byParam.set(kn.params.lid, `vec3<u32>(t_ % ${sx}u, (t_ / ${sx}u) % ${sy}u, t_ / ${sx * sy}u)`);
    if (kn.params.nwg) byParam.set(kn.params.nwg, `vec3<u32>(${X}u, ${Y}u, ${Z}u)`);
    // The entry's parameters in their declared order.
    const order = [...kn.body.matchAll(/@builtin\(\w+\)\s*(\w+)\s*:/g)].map((m) => m[1]);
    for (const name of order) args.push(byParam.get(name)!);
    calls.push(`${k ? "} else " : ""}if (g_ < ${base + W}u) {
    let q = g_ - ${base}u;
    main_m${k}(${args.join(", ")});`);
    base += W;
    // the entry's own attributes are gone: turn `fn main_mK(@builtin(x) p: vec3<u32>, …)` into plain parameters
    out[out.length - 1] = out[out.length - 1].replace(/@builtin\(\w+\)\s*/g, "");
  });
  out.push(`@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) w_: vec3<u32>, @builtin(local_invocation_id) l_: vec3<u32>,
        @builtin(num_workgroups) n_: vec3<u32>) {
  let g_ = w_.x + w_.y * n_.x;
  let t_ = l_.x;
  ${calls.join("\n  ")}
  }
}`);
  return out.join("\n");
}

/** Total workgroups of merged parts. */
export function mergedWorkgroups(parts: readonly Pick<MergePart, "workgroups">[]): number {
  return parts.reduce((a, p) => a + p.workgroups[0] * p.workgroups[1] * p.workgroups[2], 0);
}
