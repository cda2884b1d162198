/**
 * The layering of the whole tree (declared in layers.ts): every project .ts file is in a layer, no import circle,
 * imports point down only, and the allow-list holds only real imports. A lexer over the files, no type-check: fast.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { ALLOWED, LAYERS } from "./layers.ts";
import { importCycles, layerOf, layerViolations, type Link, linksOf, reaches } from "./layering.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** Folders that hold no project code. */
const SKIP = new Set(["node_modules", "out", ".venv", ".cache", ".git"]);

/** Every project .ts (and browser .js) file, repo-relative, with its text. */
async function projectFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(`${ROOT}${dir}`)) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory && !SKIP.has(e.name) && !e.name.startsWith(".")) await walk(`${path}/`);
      else if (e.isFile && /\.(ts|js)$/.test(e.name)) files.set(path, await Deno.readTextFile(`${ROOT}${path}`));
    }
  };
  await walk("");
  return files;
}

const files = await projectFiles();
const links = linksOf(files);
const allowed = new Set(ALLOWED.keys());
const checked: Link[] = links.filter((l) => !allowed.has(`${l.from} -> ${l.to}`));

Deno.test("layers: the tree was read", () => {
  assert.ok(files.size > 100, `expected the project's .ts files under ${ROOT}, found ${files.size}`);
  assert.ok(links.length > files.size, `expected more imports than files, found ${links.length}`);
});

Deno.test("layers: every project .ts file is in a layer declared in _tools/layers.ts", () => {
  const orphans = [...files.keys()].filter((f) => !layerOf(f, LAYERS)).sort();
  assert.deepEqual(orphans, [], `files in no layer (declare their folder in _tools/layers.ts):\n${orphans.join("\n")}`);
});

Deno.test("layers: imports stay inside the repository and reach existing files", () => {
  const bad = links
    .filter((l) => l.to.startsWith("..") || !files.has(l.to))
    .map((l) =>
      `${l.from}:${l.line} imports ${l.specifier}, which is ${l.to.startsWith("..") ? "outside" : "no file"}`
    );
  assert.deepEqual(bad, [], bad.join("\n"));
});

Deno.test("layers: no import circle between project files", () => {
  const cycles = importCycles(checked).map((c) => c.join(" -> "));
  assert.deepEqual(cycles, [], `import circles (break each one; type-only imports count):\n${cycles.join("\n")}`);
});

Deno.test("layers: imports point down only (own layer or lower; tests may use any test helper)", () => {
  const v = layerViolations(checked, LAYERS);
  assert.deepEqual(v, [], `imports against the layers of _tools/layers.ts:\n${v.join("\n")}`);
});

Deno.test("layers: every allow-list entry is a real import that still breaks a rule", () => {
  const real = new Map(links.map((l) => [`${l.from} -> ${l.to}`, l]));
  const problems: string[] = [];
  for (const key of ALLOWED.keys()) {
    const link = real.get(key);
    if (!link) problems.push(`${key}: no such import any more; remove it from ALLOWED`);
    else {
      const inCycle = reaches(checked, link.to, link.from);
      const breaksLayer = layerViolations([link], LAYERS).length > 0;
      if (!inCycle && !breaksLayer) problems.push(`${key}: breaks no rule now; remove it from ALLOWED`);
    }
  }
  assert.deepEqual(problems, [], problems.join("\n"));
});
