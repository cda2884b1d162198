/** The import scanner and the checks on small, made-up sources (the real tree: layering_test.ts). */
import assert from "node:assert/strict";
import { scanImports } from "./imports.ts";
import { importCycles, layerViolations, linksOf, reaches } from "./layering.ts";
import type { Layer } from "./layers.ts";

Deno.test("scanImports: static, type-only, export-from, side-effect, dynamic and type-position imports", () => {
  const src = [
    `import { a, type B } from "./a.ts";`,
    `import type {`,
    `  C,`,
    `} from "../c.ts";`,
    `import * as d from "./d.ts";`,
    `import "./side.ts";`,
    `export { e } from "./e.ts";`,
    `export type { F } from "./f.ts";`,
    `export * from "./g.ts";`,
    `const h = await import("./h.ts");`,
    `let i: import("./i.ts").I;`,
    `export const j = 1;`,
    `export function k() { return "from"; }`,
  ].join("\n");
  assert.deepEqual(
    scanImports(src).map((e) => [e.specifier, e.kind, e.typeOnly, e.line]),
    [
      ["./a.ts", "static", false, 1],
      ["../c.ts", "static", true, 4],
      ["./d.ts", "static", false, 5],
      ["./side.ts", "static", false, 6],
      ["./e.ts", "static", false, 7],
      ["./f.ts", "static", true, 8],
      ["./g.ts", "static", false, 9],
      ["./h.ts", "dynamic", false, 10],
      ["./i.ts", "dynamic", false, 11],
    ],
  );
});

Deno.test("scanImports: comments, strings, templates and regexes are no imports; template code is", () => {
  const src = [
    `// import { x } from "./comment.ts";`,
    `/* import "./block.ts"; */`,
    `const s = 'import { y } from "./string.ts"';`,
    'const t = `import z from "./template.ts" ${await import("./in_template.ts")}`;',
    `const r = /import "x"/g;`,
    `const q = a / b / c; import("./after_division.ts");`,
    `obj.import("./method.ts");`,
  ].join("\n");
  assert.deepEqual(scanImports(src).map((e) => e.specifier), ["./in_template.ts", "./after_division.ts"]);
});

const LAYERS: Layer[] = [
  { name: "low", level: 0, paths: ["low/"] },
  { name: "high", level: 1, paths: ["high/"] },
];

Deno.test("checks: a circle is reported as a path through the files", () => {
  const links = linksOf(
    new Map([
      ["low/a.ts", `import "./b.ts";`],
      ["low/b.ts", `import type { C } from "./c.ts";`],
      ["low/c.ts", `export { a } from "./a.ts";`],
      ["low/d.ts", `import "./a.ts";`],
    ]),
  );
  assert.deepEqual(importCycles(links), [["low/a.ts", "low/b.ts", "low/c.ts", "low/a.ts"]]);
  assert.deepEqual(importCycles(links.filter((l) => l.from !== "low/c.ts")), []);
  assert.ok(reaches(links, "low/d.ts", "low/c.ts") && !reaches(links, "low/a.ts", "low/d.ts"));
});

Deno.test("checks: upward imports, product importing tests, and tests using helpers", () => {
  const links = linksOf(
    new Map([
      ["low/a.ts", `import { h } from "../high/h.ts";\nimport { t } from "./testing.ts";`],
      ["low/a_test.ts", `import { h } from "../high/testing.ts";\nimport { p } from "../high/p.ts";`],
      ["low/testing.ts", `import { q } from "../high/testing.ts";`],
      ["high/h.ts", `import { a } from "../low/a.ts";\nimport { o } from "../other/o.ts";`],
    ]),
  );
  assert.deepEqual(layerViolations(links, LAYERS), [
    "low/a.ts:1 imports high/h.ts: layer low (level 0) may not import layer high (level 1); " +
    "expected only its own layer or lower",
    "low/a.ts:2 imports low/testing.ts: product code (layer low) must not import a test helper",
    "low/a_test.ts:2 imports high/p.ts: layer low (level 0) may not import layer high (level 1); " +
    "expected only its own layer or lower",
    "low/testing.ts:1 imports high/testing.ts: layer low (level 0) may not import layer high (level 1); " +
    "expected only its own layer or lower",
    "high/h.ts:2 imports other/o.ts, but other/o.ts is in no layer: declare it in _tools/layers.ts",
  ]);
});
