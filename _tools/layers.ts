/**
 * THE declaration of Whetstone's layers: every project .ts file belongs to exactly one layer, and a file may import
 * only files of its own layer or of a layer with a lower level. `_tools/layering_test.ts` enforces it (and forbids
 * import circles) on every `deno task test`.
 *
 * Where the less obvious folders sit, and why:
 * - `deps.ts` (the only door to npm) is at the bottom with `engine/util/`: everything may use third-party code.
 * - `engine/quant/` (NF4/FP4/int8 code tables, blockwise (de)quantization of host arrays) imports nothing: it is
 *   numerics, not a model feature. The graph's `matmul_q` op, the kernels and the ONNX lowering all need its code
 *   tables, so it sits below the graph, beside `engine/gpu/`.
 * - `engine/gpu/` (opening the WebGPU device) knows nothing of graphs; executors and the tuner open devices with it.
 * - `kernels/` (the WGSL sources of the WebGPU backend, keyed by op) read graph ops' attributes, and the WebGPU
 *   executor dispatches them, so they sit between `engine/graph/` and `engine/exec/`.
 * - `engine/exec/` holds every executor (reference, WebGPU, ONNX Runtime in `exec/onnx/`) and the pick between them.
 * - `engine/optim/` (optimizer math: GaLore's projections and SVD, BAdam's blocks and schedule) needs the model's
 *   modules (nn) and is used by training, so it sits between nn and train.
 * - `engine/eval/` is scoring (BLEU/ROUGE/similarity) and inference (ChatEngine). Training uses both (predict with
 *   generate scores its predictions; `TrainSession.generate` chats through ChatEngine) and neither needs training,
 *   so eval/infer sits BELOW train, not above it: the "train < eval/infer" of the first plan would make the
 *   session's own generate an upward import.
 * - `engine/mod.ts` is the library facade over all of the engine: a layer of its own above train.
 * - The applications (`cli/`, `routes/`, `bench/`, `fixtures/`) share one level and must not import one another;
 *   `notebooks/` drive the server (`routes/`), and `main.ts` dispatches to cli and routes, so both sit above.
 * - `board/` is the Board's browser code (plain ES modules, checked here like .ts files) and its browser tests, which
 *   start the server: it sits with the notebooks above `routes/`. The app serves its files without importing them.
 *
 * Tests and test helpers:
 * - A test file (`*_test.ts`) belongs to its folder's layer. It may import any file of its own layer or below, and
 *   test helpers of any layer (the sanctioned way for, say, a graph op's test to run on an executor).
 * - A test helper (see TEST_HELPER) belongs to its folder's layer and obeys the product rule: own layer or below.
 * - Product files never import test files nor test helpers.
 * - Type-only imports (`import type`, `export type ... from`, `import("x").T`) count like any other: they still
 *   couple the files (a moved or changed type breaks the importer), and a type circle is still a circle.
 * @module
 */

/** One layer: the folders (ending in `/`) and files it owns, and its level (higher may import lower). */
export interface Layer {
  name: string;
  level: number;
  paths: readonly string[];
}

/** Every layer, lowest first. A path is matched by its longest declared prefix. */
export const LAYERS: readonly Layer[] = [
  { name: "util", level: 0, paths: ["deps.ts", "engine/util/"] },
  { name: "quant", level: 1, paths: ["engine/quant/"] },
  { name: "gpu", level: 1, paths: ["engine/gpu/"] },
  { name: "graph", level: 2, paths: ["engine/graph/"] },
  { name: "kernels", level: 3, paths: ["kernels/"] },
  { name: "exec", level: 4, paths: ["engine/exec/"] },
  { name: "io", level: 5, paths: ["engine/io/"] },
  { name: "data", level: 6, paths: ["engine/data/"] },
  { name: "config", level: 7, paths: ["engine/config/"] },
  { name: "nn", level: 8, paths: ["engine/nn/"] },
  { name: "optim", level: 9, paths: ["engine/optim/"] },
  { name: "eval", level: 10, paths: ["engine/eval/"] },
  { name: "train", level: 11, paths: ["engine/train/"] },
  { name: "facade", level: 12, paths: ["engine/mod.ts", "engine/mod_test.ts"] },
  { name: "cli", level: 13, paths: ["cli/"] },
  { name: "routes", level: 13, paths: ["routes/"] },
  { name: "bench", level: 13, paths: ["bench/"] },
  { name: "fixtures", level: 13, paths: ["fixtures/"] },
  { name: "notebooks", level: 14, paths: ["notebooks/"] },
  { name: "board", level: 14, paths: ["board/"] },
  { name: "main", level: 15, paths: ["main.ts"] },
  { name: "tools", level: 15, paths: ["_tools/", "docs/"] },
];

/** Test helpers: scaffolding for tests, never imported by product files (test files: TEST_FILE). */
export const TEST_HELPER: readonly RegExp[] = [
  // fixtures/ is all test scaffolding: tiny models and data, goldens, and the scripts that make and read them.
  /^fixtures\//,
  /(^|\/)testing\.ts$/,
  /_testing\.ts$/,
  /(^|\/)testing\//,
  /_cases\.ts$/,
  /(^|\/)cases\.ts$/,
  /_goldens\.ts$/,
];

/** Test files. */
export const TEST_FILE = /_test\.ts$/;

/**
 * Known violations still allowed: `importer -> imported` (repo-relative paths) → why, with a TODO. An allowed link
 * is left out of both checks (layers and circles). Keep it short: an entry that no longer matches a real import
 * fails the test, so the list cannot rot. Empty: the tree has no exception.
 */
export const ALLOWED: ReadonlyMap<string, string> = new Map<string, string>([]);
