/**
 * `deepspeed`: the note names the ZeRO stage and offloads of each of LLaMA-Factory's DeepSpeed configs, a missing
 * file is an error naming the key and path, and LF's own `train_full` example YAML (model pointed at the tiny
 * fixture) runs unchanged for two steps. The LF files come from ../shared (skipped with a message when absent).
 */
import assert from "node:assert/strict";
import { checkOutputDir, loadTrainConfig, parseTrainArgs } from "./args.ts";
import { checkDeepSpeed, deepSpeedRequest } from "./deepspeed.ts";
import { makeTinyModel } from "../train/testing.ts";

const SHARED = new URL("../../../shared/", import.meta.url).pathname;
const LF_EXAMPLES = `${SHARED}reference/llamafactory-examples`;
const LF_DATA = `${SHARED}llamafactory-data`;
let haveShared = true;
try {
  await Deno.stat(`${LF_EXAMPLES}/deepspeed/ds_z3_config.json`);
  await Deno.stat(`${LF_DATA}/dataset_info.json`);
} catch {
  haveShared = false;
  console.warn(`skipping LF's DeepSpeed configs and train_full examples: ${LF_EXAMPLES} is absent (../shared)`);
}

Deno.test("deepSpeedRequest reads the ZeRO stage and the offloads", () => {
  assert.deepEqual(deepSpeedRequest({}), { stage: 0, offload: [] });
  assert.deepEqual(
    deepSpeedRequest({
      zero_optimization: { stage: 3, offload_optimizer: { device: "cpu" }, offload_param: { device: "nvme" } },
    }),
    { stage: 3, offload: ["optimizer to cpu", "parameters to nvme"] },
  );
  assert.deepEqual(deepSpeedRequest({ zero_optimization: { stage: 2, offload_optimizer: { device: "none" } } }), {
    stage: 2,
    offload: [],
  });
});

Deno.test("a missing or malformed DeepSpeed config is an error naming the key and the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      checkDeepSpeed("nope/ds.json", "t.yaml", dir),
      /t\.yaml: deepspeed: no DeepSpeed config at nope\/ds\.json/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    await assert.rejects(checkDeepSpeed(`${dir}/bad.json`, "t.yaml"), /deepspeed: .*bad\.json is not valid JSON/);
    await Deno.writeTextFile(`${dir}/list.json`, "[1]");
    await assert.rejects(checkDeepSpeed(`${dir}/list.json`), /deepspeed: .*list\.json must hold a JSON object/);
    // Through checkOutputDir, as every run checks it.
    const a = parseTrainArgs({ model_name_or_path: "m", output_dir: `${dir}/out`, deepspeed: `${dir}/missing.json` });
    await assert.rejects(checkOutputDir(a, "t.yaml"), /t\.yaml: deepspeed: no DeepSpeed config at .*missing\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "LF's DeepSpeed configs: the note names the stage and the offload each asks for (needs ../shared)",
  ignore: !haveShared,
  fn: async () => {
    const expected: Record<string, RegExp> = {
      "ds_z0_config.json": /ZeRO stage 0 without offload/,
      "ds_z2_config.json": /ZeRO stage 2 without offload/,
      "ds_z2_offload_config.json": /ZeRO stage 2 with offload of the optimizer to cpu;/,
      "ds_z3_config.json": /ZeRO stage 3 without offload/,
      "ds_z3_offload_config.json": /ZeRO stage 3 with offload of the optimizer to cpu and parameters to cpu;/,
    };
    for (const [file, re] of Object.entries(expected)) {
      const note = await checkDeepSpeed(`deepspeed/${file}`, "t.yaml", LF_EXAMPLES);
      assert.match(note, re, file);
      assert.match(note, /^deepspeed: deepspeed\/.*one device.*runner: llamafactory/, file);
    }
  },
});

Deno.test({
  name: "LF's train_full example runs unchanged on the tiny model for two steps, noting DeepSpeed (needs ../shared)",
  ignore: !haveShared,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "whetstone-ds-" });
    try {
      // LF's YAMLs name `examples/deepspeed/...` from LF's repository root: a folder standing in for it is the working
      // folder of a `deno task train` subprocess (no chdir here: test files run in parallel in one process).
      await Deno.symlink(LF_EXAMPLES, `${root}/examples`);
      const model = await makeTinyModel(`${root}/model`);
      const yaml = `${LF_EXAMPLES}/train_full/qwen3_full_sft.yaml`;
      const overrides = [
        `model_name_or_path=${model}`,
        `dataset_dir=${LF_DATA}`,
        `output_dir=${root}/out`,
        "max_samples=8",
        "cutoff_len=64",
        "max_steps=2",
        "logging_steps=1",
        "save_strategy=no",
      ];
      const a = await loadTrainConfig(yaml, overrides);
      assert.deepEqual([a.deepspeed, a.finetuning_type], ["examples/deepspeed/ds_z3_config.json", "full"]);
      const main = new URL("../../main.ts", import.meta.url).pathname;
      const r = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--unstable-webgpu", "--unstable-kv", main, "train", yaml, ...overrides],
        cwd: root,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const err = new TextDecoder().decode(r.stderr);
      assert.equal(r.code, 0, err);
      assert.match(
        err,
        /note: deepspeed: examples\/deepspeed\/ds_z3_config\.json asks for DeepSpeed ZeRO stage 3 without/,
      );
      const state = JSON.parse(await Deno.readTextFile(`${root}/out/trainer_state.json`));
      assert.equal(state.global_step, 2);
      const losses = state.log_history.filter((h: { loss?: number }) => h.loss !== undefined);
      assert.equal(losses.length, 2);
      for (const h of losses) assert.ok(Number.isFinite(h.loss), `loss ${h.loss}`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
