/**
 * The library's documentation runs: `deno test --doc` type-checks and runs the ```ts examples in the JSDoc of
 * engine/mod.ts and of the modules it exports from (on the repository's tiny fixtures), in a child `deno test` so
 * that `deno task test` covers them without `--doc` over the whole repository.
 */
import assert from "node:assert/strict";

/** The public API's entry point and the modules it re-exports whose docs have examples. */
export const DOC_FILES = [
  "engine/mod.ts",
  "engine/config/args.ts",
  "engine/config/preview.ts",
  "engine/train/trainer.ts",
  "engine/eval/chat.ts",
  "engine/eval/metrics.ts",
  "engine/nn/model.ts",
  "engine/nn/generate.ts",
  "engine/nn/export.ts",
  "engine/nn/onnx_export.ts",
  "engine/data/tokenizer.ts",
  "engine/data/preview.ts",
  "engine/data/dataset_info.ts",
  "engine/exec/pick.ts",
  "engine/gpu/device.ts",
  "engine/io/hub.ts",
  "engine/train/session.ts",
] as const;

Deno.test("library docs: the examples of engine/mod.ts and its modules type-check and run", async () => {
  const root = new URL("../", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--unstable-webgpu", "--unstable-kv", "--doc", ...DOC_FILES],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text.slice(-6000));
  // Every file with a ```ts block ran at least one example (a file whose examples vanish would pass silently).
  for (const f of ["engine/mod.ts", "engine/config/preview.ts", "engine/nn/generate.ts", "engine/nn/export.ts"]) {
    assert.match(text, new RegExp(`${f.replaceAll(".", "\\.")}#\\d+-\\d+\\.ts \\.\\.\\. .*ok`), f);
  }
});
