import assert from "node:assert/strict";
import { parseTrainArgs } from "../engine/mod.ts";
import { HttpError } from "./http.ts";
import { Roots } from "./paths.ts";

const tmp = await Deno.realPath(await Deno.makeTempDir({ prefix: "whetstone-roots-" }));
const outside = await Deno.realPath(await Deno.makeTempDir({ prefix: "whetstone-outside-" }));
await Deno.mkdir(`${tmp}/root/data`, { recursive: true });
await Deno.symlink(outside, `${tmp}/root/link`);
const roots = await Roots.of([`${tmp}/root`]);

async function refused(field: string, p: string) {
  await assert.rejects(roots.path(field, p), (e: unknown) => {
    assert.ok(e instanceof HttpError && e.status === 400, String(e));
    assert.equal((e as HttpError).field, field);
    assert.match((e as Error).message, new RegExp(`^${field}: .* is outside the allowed roots`));
    return true;
  });
}

Deno.test("roots: relative paths resolve from the first root; absolute ones inside it pass", async () => {
  assert.equal(await roots.path("dataset_dir", "data"), `${tmp}/root/data`);
  assert.equal(await roots.path("output_dir", "out/new/run"), `${tmp}/root/out/new/run`);
  assert.equal(await roots.path("output_dir", `${tmp}/root/data/../data`), `${tmp}/root/data`);
  assert.equal(await roots.path("output_dir", "."), `${tmp}/root`);
  assert.equal(roots.display(`${tmp}/root/data`), "data");
});

Deno.test("roots: ../ escapes, absolute paths elsewhere and links out are refused naming the field", async () => {
  await refused("output_dir", "../escape");
  await refused("output_dir", "data/../../escape");
  await refused("dataset_dir", "/etc");
  await refused("model_name_or_path", "link");
  await refused("output_dir", "link/new/folder");
  await refused("output_dir", `${tmp}/rootx`); // a sibling sharing the prefix
});

Deno.test("roots: hub ids pass as they are unless a local folder has that name", async () => {
  assert.equal(await roots.modelPath("model_name_or_path", "Qwen/Qwen3-0.6B"), "Qwen/Qwen3-0.6B");
  assert.equal(await roots.modelPath("model_name_or_path", "data"), `${tmp}/root/data`);
  await assert.rejects(roots.modelPath("model_name_or_path", "../x/y"), /outside the allowed roots/);
});

Deno.test("roots: confineArgs rewrites every path argument and refuses the first one out", async () => {
  const a = parseTrainArgs({ model_name_or_path: "data", dataset: "d", dataset_dir: "data", output_dir: "out/x" });
  await roots.confineArgs(a);
  assert.equal(a.model_name_or_path, `${tmp}/root/data`);
  assert.equal(a.dataset_dir, `${tmp}/root/data`);
  assert.equal(a.output_dir, `${tmp}/root/out/x`);
  const b = parseTrainArgs({
    model_name_or_path: "data",
    dataset: "d",
    output_dir: "out",
    adapter_name_or_path: "../a",
  });
  await assert.rejects(roots.confineArgs(b), /^HttpError: adapter_name_or_path: "..\/a" is outside/);
  for (const [key, value] of [["ref_model", "../m"], ["reward_model", "/etc"]]) {
    const c = parseTrainArgs({
      model_name_or_path: "data",
      dataset: "d",
      output_dir: "out",
      stage: key === "ref_model" ? "dpo" : "ppo",
      finetuning_type: "lora",
      [key]: value,
    });
    await assert.rejects(roots.confineArgs(c), new RegExp(`^HttpError: ${key}: ".*" is outside`));
  }
});

Deno.test("roots: a missing root is an error naming it", async () => {
  await assert.rejects(Roots.of([`${tmp}/missing`]), /root folder .*missing.* cannot be used/);
  await Deno.remove(tmp, { recursive: true });
  await Deno.remove(outside, { recursive: true });
});
