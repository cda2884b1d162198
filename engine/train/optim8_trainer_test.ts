/**
 * `optim: adamw_8bit` (bitsandbytes' 8-bit AdamW) in the trainer, on the built-in tiny model and the demo data: the
 * loss falls in a short full run; the checkpoint holds bitsandbytes' state dict layout (uint8 `state1` / `state2` of
 * the param's shape and f32 `absmax1` / `absmax2` for params of 4096 elements or more, f32 states for the rest); a run
 * stopped at step 4 resumes step for step and ends with the same 8-bit states byte for byte; the memory plan counts
 * 2 bytes and 2 absmax values per 256 elements for the 8-bit params.
 */
import assert from "node:assert/strict";
import { loadTrainConfig } from "../config/args.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-optim8-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };

function demo(out: string, extra: string[], steps = 8) {
  return loadTrainConfig(`${ROOT}examples/demo_lora_sft.yaml`, [
    `model_name_or_path=${ROOT}fixtures/tiny/model`,
    `dataset_dir=${ROOT}fixtures/demo`,
    `output_dir=${out}`,
    `max_steps=${steps}`,
    "max_samples=16",
    "cutoff_len=64",
    "per_device_train_batch_size=4",
    "val_size=0",
    "eval_strategy=no",
    "logging_steps=1",
    "save_steps=4",
    "plot_loss=false",
    "seed=7",
    "finetuning_type=full",
    "learning_rate=1e-3",
    "weight_decay=0.01",
    ...extra,
  ]);
}

const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

Deno.test("adamw_8bit: the loss falls, checkpoints hold bitsandbytes' states, a stopped run resumes exactly", async () => {
  const out = `${root}/whole`;
  const whole = await train(await demo(out, ["optim=adamw_8bit"]), { progress: false, ...quiet });
  const l = whole.losses.map((x) => x.loss);
  assert.equal(l.length, 8);
  assert.ok((l[6] + l[7]) / 2 < (l[0] + l[1]) / 2 - 0.3, `${l.map((x) => x.toFixed(3))}`);

  using f = await openSafetensors(`${out}/checkpoint-8/optimizer.safetensors`);
  let big = 0, small = 0;
  for (const [name, info] of f.tensors) {
    if (!name.endsWith(".state1")) continue;
    const p = name.slice(0, -".state1".length), n = numel(info.shape);
    if (n >= 4096) {
      big++;
      assert.equal(info.dtype, "U8", name);
      assert.deepEqual(f.tensors.get(`${p}.state2`)?.dtype, "U8");
      assert.deepEqual(f.tensors.get(`${p}.absmax1`)?.shape, [Math.ceil(n / 256)]);
      assert.deepEqual(f.tensors.get(`${p}.absmax2`)?.shape, [Math.ceil(n / 256)]);
      const codes = await f.read(name);
      assert.ok(new Set(codes).size > 16, `${name}: the codes vary`);
    } else {
      small++;
      assert.equal(info.dtype, "F32", name);
      assert.ok(!f.tensors.has(`${p}.absmax1`), `${p}: no absmax for a 32-bit state`);
    }
  }
  assert.ok(big > 10 && small > 5, `${big} 8-bit and ${small} 32-bit params`);

  const cut = `${root}/cut`;
  await train(await demo(cut, ["optim=paged_adamw_8bit"]), { progress: false, ...quiet, stopAfter: 4 });
  const rest = await train(await demo(cut, ["optim=paged_adamw_8bit", "resume_from_checkpoint=true"]), {
    progress: false,
    ...quiet,
  });
  const r = rest.losses.map((x) => x.loss);
  assert.equal(r.length, 4);
  r.forEach((x, i) => assert.ok(Math.abs(x - l[4 + i]) < 1e-6, `step ${5 + i}: resumed ${x} vs ${l[4 + i]}`));
  using g = await openSafetensors(`${cut}/checkpoint-8/optimizer.safetensors`);
  for (const [name, info] of f.tensors) {
    if (info.dtype !== "U8") continue;
    assert.deepEqual(await g.read(name), await f.read(name), `${name}: the resumed run's codes`);
  }
});

Deno.test("adamw_8bit: the memory plan counts bitsandbytes' state bytes", async () => {
  const s = await TrainSession.create(await demo(`${root}/plan`, ["optim=adamw_8bit"], 1), quiet);
  const shapes = [...s.model.params.values()].map((p) => p.shape);
  let want = 0;
  for (const shape of shapes) {
    const n = numel(shape);
    want += n >= 4096 ? 2 * 4 * Math.ceil(n / 4) + 2 * 4 * Math.ceil(n / 256) : 8 * n;
  }
  assert.equal(s.plan.trainable_parameters, shapes.reduce((a, x) => a + numel(x), 0));
  assert.equal(s.plan.memory!.optimizer, want);
  assert.ok(want < 3 * s.plan.trainable_parameters, `${want} bytes for ${s.plan.trainable_parameters} params`);
  s.close();
});
