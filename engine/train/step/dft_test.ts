/**
 * `use_dft_loss`: {@linkcode dftLossSum} against fixtures/losses/dft.json (LLaMA-Factory's `_dft_cross_entropy`
 * ported in fixtures/losses/make_dft.py, float64 torch autograd): loss and gradient w.r.t. the logits, ignored rows
 * included; and a short sft run on the tiny model that learns (its tokens' probabilities, hence its DFT loss, rise)
 * and is not the plain cross-entropy run.
 */
import assert from "node:assert/strict";
import { backward, Graph, mul } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { loadTrainConfig, parseTrainArgs } from "../../config/args.ts";
import { makeTinyModel } from "../testing.ts";
import { train } from "../trainer.ts";
import { dftLossSum } from "./lm.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const GOLD = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/losses/dft.json`));

Deno.test("DFT loss and its gradient match LF's _dft_cross_entropy", async () => {
  const { N, V } = GOLD;
  const g = new Graph();
  const logits = g.param("logits", [N, V]);
  const labels = g.input("labels", [N], "i32");
  const loss = mul(dftLossSum(logits, labels), 1 / GOLD.num_items);
  g.output("loss", loss);
  g.output("grad", backward(loss, [logits])[0]);
  const ex = new ReferenceExecutor();
  ex.setParam("logits", GOLD.logits, [N, V]);
  const out = await (await ex.compile(g)).run({ labels: GOLD.labels });
  assert.ok(Math.abs(out.loss[0] - GOLD.loss) < 1e-9, `${out.loss[0]} vs ${GOLD.loss}`);
  assert.ok(Math.abs(GOLD.loss - GOLD.plain_ce) > 0.1, "the golden tells DFT from plain cross-entropy");
  for (let i = 0; i < N * V; i++) assert.ok(Math.abs(out.grad[i] - GOLD.grad[i]) < 1e-9, `grad[${i}]`);
  ex.dispose();
});

Deno.test("use_dft_loss: an sft run on the tiny model; the tokens get likelier; not the plain cross-entropy", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-dft-" });
  try {
    const model = await makeTinyModel(`${root}/model`);
    const run = async (dft: boolean) =>
      (await train(
        parseTrainArgs({
          model_name_or_path: model,
          stage: "sft",
          do_train: true,
          dataset: "whetstone_demo",
          dataset_dir: `${ROOT}fixtures/demo`,
          template: "qwen",
          cutoff_len: 64,
          max_samples: 8,
          output_dir: `${root}/out-${dft}`,
          logging_steps: 1,
          per_device_train_batch_size: 4,
          learning_rate: 1e-2,
          max_steps: 6,
          save_strategy: "no",
          use_dft_loss: dft,
        }),
        { progress: false, log: () => {} },
      )).losses.map((l) => l.loss);
    const dft = await run(true), plain = await run(false);
    // The DFT loss is Σ p·(−log p) / tokens, which grows with p below 1/e: from random logits (p ≈ 1/V) the model
    // learning its tokens shows as a rising DFT loss (the plain run's loss falls).
    assert.ok(dft.at(-1)! > dft[0] * 1.1, `DFT loss ${dft}`);
    assert.ok(plain.at(-1)! < plain[0], `plain loss ${plain}`);
    // Random logits give p ≈ 1/V per token: the DFT loss is the plain loss times about exp(−loss).
    assert.ok(dft[0] < plain[0] * 0.5, `DFT ${dft[0]} vs plain ${plain[0]}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

const LF = `${ROOT}../shared/reference/llamafactory-examples/extras/dft/qwen2_full_sft.yaml`;
const LF_DATA = `${ROOT}../shared/llamafactory-data`;
const haveLf = await Deno.stat(LF).then(() => Deno.stat(LF_DATA)).then(() => true, () => false);
if (!haveLf) console.warn(`skipping LF's extras/dft example: ${LF} is absent (../shared)`);

Deno.test({
  name: "LF's extras/dft example runs unchanged on the tiny model for two steps (needs ../shared)",
  ignore: !haveLf,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "whetstone-dft-lf-" });
    try {
      const a = await loadTrainConfig(LF, [
        `model_name_or_path=${await makeTinyModel(`${root}/model`)}`,
        `dataset_dir=${LF_DATA}`,
        `output_dir=${root}/out`,
        "max_samples=8",
        "cutoff_len=64",
        "max_steps=2",
        "save_strategy=no",
      ]);
      assert.equal(a.use_dft_loss, true);
      const res = await train(a, { progress: false, log: () => {} });
      assert.equal(res.globalStep, 2);
      assert.ok(res.losses.every((l) => Number.isFinite(l.loss)));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
