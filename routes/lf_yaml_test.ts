import assert from "node:assert/strict";
import { parseYaml } from "../deps.ts";
import { lfArgs, lfYamlText, yaml11Float } from "./lf_yaml.ts";
import { Roots } from "./paths.ts";
import { ROOT } from "./testing.ts";

Deno.test("lfArgs: LF keys kept, Whetstone's dropped with a warning, others a 400 naming the key; paths confined", async () => {
  const roots = await Roots.of([ROOT]);
  const { args, outputDir, warnings } = await lfArgs({
    model_name_or_path: "fixtures/tiny/model",
    adapter_name_or_path: ["fixtures/models/qwen2/lora"],
    dataset: ["a", "b"],
    dataset_dir: "fixtures/demo",
    output_dir: "out/lf-x",
    evaluation_strategy: "steps",
    executor: "onnx",
    bucket: 32,
    learning_rate: 2e-7,
  }, roots);
  assert.equal(outputDir, `${ROOT}/out/lf-x`);
  assert.deepEqual(args, {
    model_name_or_path: `${ROOT}/fixtures/tiny/model`,
    adapter_name_or_path: `${ROOT}/fixtures/models/qwen2/lora`,
    dataset: "a,b",
    dataset_dir: `${ROOT}/fixtures/demo`,
    output_dir: `${ROOT}/out/lf-x`,
    evaluation_strategy: "steps",
    learning_rate: 2e-7,
    do_train: true,
  });
  assert.deepEqual(warnings.map((w) => w.split(":")[0]), ["executor", "bucket"]);
  const refuse = async (config: Record<string, unknown>, field: string) => {
    await assert.rejects(lfArgs({ model_name_or_path: "m/n", output_dir: "out/x", ...config }, roots), (e) => {
      assert.equal((e as { field?: string }).field, field);
      return true;
    });
  };
  await refuse({ no_such_key: 1 }, "no_such_key");
  await refuse({ output_dir: "/etc" }, "output_dir");
  await refuse({ output_dir: undefined }, "output_dir");
  await refuse({ adapter_name_or_path: "/etc/a" }, "adapter_name_or_path");
  await refuse({ dataset_dir: "../../.." }, "dataset_dir");
  await refuse({ logging_dir: "/tmp/../etc" }, "logging_dir");
  await refuse({ deepspeed: "/etc/ds.json" }, "deepspeed");
  const ds = await lfArgs(
    { model_name_or_path: "m/n", output_dir: "out/x", deepspeed: { zero_optimization: {} } },
    roots,
  );
  assert.deepEqual(ds.args.deepspeed, { zero_optimization: {} });
});

Deno.test("lfYamlText: YAML 1.1 as PyYAML reads it (floats with a dot, yes/on quoted), round-trips", () => {
  assert.equal(yaml11Float(2e-7), "2.0e-7");
  assert.equal(yaml11Float(1.5e-7), "1.5e-7");
  assert.equal(yaml11Float(0.005), "0.005");
  const args = { learning_rate: 2e-7, warmup_ratio: 0.1, template: "yes", report_to: "on", do_train: true, n: 3 };
  const text = lfYamlText(args);
  assert.match(text, /^learning_rate: 2\.0e-7$/m);
  assert.match(text, /^template: "yes"$/m);
  assert.deepEqual(parseYaml(text), args);
});
