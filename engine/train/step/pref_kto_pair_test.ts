/**
 * `pref_loss: kto_pair` against fixtures/pref/kto_pair.json (TRL 0.8.6's `dpo_loss` kto_pair branch transcribed in
 * fixtures/pref/make_kto_pair.py, float64 torch autograd): loss, gradients w.r.t. the policy log-probs and LF's
 * reward metrics on the reference executor, with two padding rows that must change nothing (the batch KL means are
 * over the real rows). One case has a clamped KL (the chosen half's mean log-ratio is negative), the other none.
 */
import assert from "node:assert/strict";
import { backward, concat, div, Graph, reshape, type Tensor } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { parseTrainArgs } from "../../config/args.ts";
import { train } from "../trainer.ts";
import { dpoObjective, metricNames, prefLossConfig, usesReference } from "./pref_loss.ts";

// deno-lint-ignore no-explicit-any
type Json = any;
const read = async (f: string): Promise<Json> =>
  JSON.parse(await Deno.readTextFile(new URL(`../../../fixtures/pref/${f}`, import.meta.url)));
const GOLD = await read("goldens.json"), KP = await read("kto_pair.json");
const PAD = 2;
const ROOT = new URL("../../../", import.meta.url).pathname;
const padded = (xs: number[], v: number) => [...xs, ...new Array(PAD).fill(v)];

function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-9): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    assert.ok(
      Math.abs(got[i] - want[i]) <= tol * Math.max(1, Math.abs(want[i])),
      `${what}[${i}]: ${got[i]} vs ${want[i]}`,
    );
  }
}

Deno.test("kto_pair: loss, gradients and rewards match TRL 0.8.6's dpo_loss (with LF's ftx)", async () => {
  const x = GOLD.logps.inputs, n = x.chosen_sum.length, B = n + PAD;
  for (const c of KP.cases) {
    const cfg = prefLossConfig(c.config);
    assert.equal(cfg.loss, "kto_pair");
    assert.ok(usesReference(cfg.loss));
    const g = new Graph();
    const pc = g.param("pc", [B]), pr = g.param("pr", [B]);
    const [rc, rr, lc, rows] = ["rc", "rr", "lc", "rows"].map((k) => g.input(k, [B]));
    const { loss, metrics } = dpoObjective(
      { chosen: pc, rejected: pr, refChosen: rc, refRejected: rr, chosenAvg: div(pc, lc) },
      rows,
      cfg,
    );
    g.output("loss", loss);
    g.output("metrics", concat(metrics.map((m: Tensor) => reshape(m, [1])), 0));
    const [gc, gr] = backward(loss, [pc, pr]);
    g.output("gc", gc);
    g.output("gr", gr);
    const ex = new ReferenceExecutor();
    ex.setParam("pc", padded(c.chosen_sum, -3), [B]);
    ex.setParam("pr", padded(x.rejected_sum, -2), [B]);
    const out = await (await ex.compile(g)).run({
      rc: padded(x.ref_chosen_sum, 5),
      rr: padded(x.ref_rejected_sum, -9),
      lc: padded(x.chosen_len, 2),
      rows: padded(new Array(n).fill(1), 0),
    });
    close(`${c.config.name} loss`, out.loss, [c.loss]);
    close(`${c.config.name} d/d chosen`, out.gc, padded(c.grad.chosen_sum, 0));
    close(`${c.config.name} d/d rejected`, out.gr, padded(c.grad.rejected_sum, 0));
    const names = metricNames("dpo", cfg.loss);
    for (const [k, v] of Object.entries(c.metrics as Record<string, number>)) {
      close(`${c.config.name} ${k}`, [out.metrics[names.indexOf(k)]], [v]);
    }
    ex.dispose();
  }
});

Deno.test("kto_pair: LoRA DPO on the bundled pairs with the tiny model; the loss falls, the margins rise", async () => {
  const out = await Deno.makeTempDir({ prefix: "whetstone-kto-pair-" });
  try {
    const res = await train(
      parseTrainArgs({
        model_name_or_path: `${ROOT}fixtures/tiny/model`,
        stage: "dpo",
        pref_loss: "kto_pair",
        do_train: true,
        dataset: "whetstone_pref",
        dataset_dir: `${ROOT}fixtures/demo`,
        template: "qwen",
        cutoff_len: 128,
        output_dir: out,
        logging_steps: 2,
        per_device_train_batch_size: 4,
        learning_rate: 2e-3,
        lr_scheduler_type: "constant",
        max_steps: 8,
        save_strategy: "no",
        seed: 7,
      }),
      { progress: false, log: () => {} },
    );
    const logs = res.logHistory.filter((h) => h.loss !== undefined);
    assert.ok(logs.at(-1)!.loss! < logs[0].loss!, `loss ${logs.map((h) => h.loss)}`);
    assert.ok(logs.at(-1)!["rewards/margins"]! > logs[0]["rewards/margins"]!);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
