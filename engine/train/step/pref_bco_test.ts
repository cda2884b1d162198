/**
 * `pref_bco_weight`: LF's BCO-in-DPO mixture against fixtures/pref/bco.json (LF's `bco_loss` and re-weighting with
 * TRL's RunningMoments, ported in make_bco.py, float64): three batches in a row on the reference executor, the
 * running reward mean carried in a store param between them (as the step graph assigns it); loss, gradients and the
 * running mean after each; and a dpo run on the tiny model with the weight set.
 */
import assert from "node:assert/strict";
import { backward, Graph } from "../../graph/mod.ts";
import { assign } from "../../graph/ops/assign.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { parseTrainArgs } from "../../config/args.ts";
import { train } from "../trainer.ts";
import { dpoObjective, prefLossConfig } from "./pref_loss.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const GOLD = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/pref/bco.json`));

Deno.test("BCO mixture: losses, gradients and the running mean match LF's bco_loss with TRL's RunningMoments", async () => {
  const cfg = prefLossConfig({ pref_beta: GOLD.beta, pref_bco_weight: GOLD.pref_bco_weight });
  const B = 4;
  const g = new Graph();
  const pc = g.param("pc", [B]), pr = g.param("pr", [B]), run = g.param("running", [2]);
  const [rc, rr, rows] = ["rc", "rr", "rows"].map((k) => g.input(k, [B]));
  const o = dpoObjective(
    { chosen: pc, rejected: pr, refChosen: rc, refRejected: rr, chosenAvg: pc },
    rows,
    cfg,
    undefined,
    {
      running: run,
    },
  );
  assert.ok(o.running, "the objective updates the running mean");
  g.output("loss", o.loss);
  const [gc, gr] = backward(o.loss, [pc, pr]);
  g.output("gc", gc);
  g.output("gr", gr);
  g.output("next", o.running!);
  assign(run, o.running!);
  const ex = new ReferenceExecutor();
  ex.setParam("running", [0, 1e-24], [2]);
  const c = await ex.compile(g);
  for (const [i, b] of GOLD.batches.entries()) {
    ex.setParam("pc", b.pc, [B]);
    ex.setParam("pr", b.pr, [B]);
    const out = await c.run({ rc: b.rc, rr: b.rr, rows: [1, 1, 1, 1] });
    const near = (x: number, y: number, what: string) =>
      assert.ok(Math.abs(x - y) < 1e-9, `batch ${i} ${what}: ${x} vs ${y}`);
    near(out.loss[0], b.loss, "loss");
    near(out.next[0], b.running_mean, "running mean");
    for (let j = 0; j < B; j++) {
      (near(out.gc[j], b.grad_pc[j], "d/d chosen"), near(out.gr[j], b.grad_pr[j], "d/d rejected"));
    }
  }
  ex.dispose();
});

Deno.test("pref_bco_weight: a LoRA dpo run on the tiny model learns, and is not the plain DPO run", async () => {
  const out = await Deno.makeTempDir({ prefix: "whetstone-bco-" });
  try {
    const run = (w: number) =>
      train(
        parseTrainArgs({
          model_name_or_path: `${ROOT}fixtures/tiny/model`,
          stage: "dpo",
          do_train: true,
          dataset: "whetstone_pref",
          dataset_dir: `${ROOT}fixtures/demo`,
          template: "qwen",
          cutoff_len: 128,
          output_dir: `${out}/${w}`,
          logging_steps: 2,
          per_device_train_batch_size: 2,
          gradient_accumulation_steps: 2,
          learning_rate: 2e-3,
          lr_scheduler_type: "constant",
          max_steps: 8,
          save_strategy: "no",
          seed: 7,
          pref_bco_weight: w,
        }),
        { progress: false, log: () => {} },
      );
    const res = await run(0.5), plain = await run(0);
    const logs = res.logHistory.filter((h) => h.loss !== undefined);
    assert.notDeepEqual(
      logs.map((h) => h.loss),
      plain.logHistory.filter((h) => h.loss !== undefined).map((h) => h.loss),
    );
    assert.ok(logs.at(-1)!.loss! < logs[0].loss!, `loss ${logs.map((h) => h.loss)}`);
    assert.ok(logs.at(-1)!["rewards/margins"]! > logs[0]["rewards/margins"]!);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
