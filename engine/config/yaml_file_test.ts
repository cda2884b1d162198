import assert from "node:assert/strict";
import { readConfigFile } from "./yaml_file.ts";

Deno.test("readConfigFile: YAML mapping with key=value overrides parsed as YAML scalars", async () => {
  const path = await Deno.makeTempFile({ suffix: ".yaml" });
  await Deno.writeTextFile(path, "model_name_or_path: m\ntemperature: 0.9\n");
  const cfg = await readConfigFile(path, ["temperature=0.5", "do_sample=false", "name=abc"]);
  assert.deepEqual(cfg, { model_name_or_path: "m", temperature: 0.5, do_sample: false, name: "abc" });
  await assert.rejects(() => readConfigFile(path, ["oops"]), /override "oops": expected key=value/);
  await Deno.writeTextFile(path, "- a\n- b\n");
  await assert.rejects(() => readConfigFile(path), /expected a mapping .* got a list/);
});
