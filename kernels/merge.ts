/**
 * Horizontal merging of compute kernels: several independent launches become one dispatch (see engine/exec/batch.ts
 * for which launches may merge). Each kernel's module-scope names get a suffix, its entry becomes an ordinary function
 * taking the workgroup id, local id and grid it had as its own dispatch, and a new entry hands each range of
 * workgroups to its kernel. Workgroup ids and grid sizes are uniform, so barriers inside the kernels stay in uniform
 * control flow. The merged workgroup has as many threads as the largest kernel's; a kernel with barriers or workgroup
 * memory must have exactly that many, a kernel without them may have fewer (dividing it): several of its workgroups
 * then share one merged workgroup, each thread calling the kernel for its own (workgroup, local id).
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
  /** The kernel synchronizes its workgroup (barriers, workgroup memory): it needs a whole workgroup of its own size. */
  readonly uniform: boolean;
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
    uniform: workgroupBytes > 0 || /\b(workgroupBarrier|storageBarrier|workgroupUniformLoad)\b/.test(body),
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

/** Whether kernels with these threads counts and needs can merge into workgroups of `threads`. */
export function fitsThreads(kernels: readonly ParsedKernel[], threads: number): boolean {
  return kernels.every((k) => (k.uniform ? threadsOf(k) === threads : threads % threadsOf(k) === 0));
}

/** Merged workgroups a part takes in workgroups of `threads`. */
function partWorkgroups(p: Pick<MergePart, "kernel" | "workgroups">, threads: number): number {
  const [X, Y, Z] = p.workgroups;
  return Math.ceil((X * Y * Z) / (threads / threadsOf(p.kernel)));
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
  const threads = Math.max(...parts.map((p) => threadsOf(p.kernel)));
  if (!fitsThreads(parts.map((p) => p.kernel), threads)) throw new Error(`kernels cannot share ${threads} threads`);
  const out: string[] = [];
  const directives = new Set(parts.flatMap((p) => p.kernel.directives));
  out.push(...directives);
  types.forEach((t, j) => out.push(`@group(0) @binding(${j}) var<storage, read_write> mb_${j}: ${t};`));
  const calls: string[] = [];
  let base = 0;
  parts.forEach((p, k) => {
    const kn = p.kernel;
    let body = kn.body;
    for (const n of kn.names) body = rename(body, n, `${n}_m${k}`);
    kn.bindings.forEach((b, i) => (body = rename(body, b.name, `mb_${p.bindingMap[i]}`)));
    // the entry's own attributes are gone: `fn main_mK(@builtin(x) p: vec3<u32>, …)` takes plain parameters
    out.push(body.replace(/@builtin\(\w+\)\s*/g, ""));
    const [X, Y, Z] = p.workgroups;
    const [sx, sy] = kn.size;
    const T = threadsOf(kn), per = threads / T;
    const W = partWorkgroups(p, threads);
    const byParam = new Map<string, string>();
    if (kn.params.wid) byParam.set(kn.params.wid, `vec3<u32>(q % ${X}u, (q / ${X}u) % ${Y}u, q / ${X * Y}u)`);
    if (kn.params.lid) byParam.set(kn.params.lid, `vec3<u32>(u % ${sx}u, (u / ${sx}u) % ${sy}u, u / ${sx * sy}u)`);
    if (kn.params.nwg) byParam.set(kn.params.nwg, `vec3<u32>(${X}u, ${Y}u, ${Z}u)`);
    // The entry's parameters in their declared order.
    const args = [...kn.body.matchAll(/@builtin\(\w+\)\s*(\w+)\s*:/g)].map((m) => byParam.get(m[1])!);
    const call = `main_m${k}(${args.join(", ")});`;
    calls.push(`${k ? "} else " : ""}if (g_ < ${base + W}u) {
    ${
      per === 1
        ? `let q = g_ - ${base}u; let u = t_; ${call}`
        : `let q = (g_ - ${base}u) * ${per}u + t_ / ${T}u; let u = t_ % ${T}u;
    if (q < ${X * Y * Z}u) { ${call} }`
    }`);
    base += W;
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
export function mergedWorkgroups(parts: readonly Pick<MergePart, "kernel" | "workgroups">[]): number {
  const threads = Math.max(...parts.map((p) => threadsOf(p.kernel)));
  return parts.reduce((a, p) => a + partWorkgroups(p, threads), 0);
}
