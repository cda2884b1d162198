/**
 * `POST /sessions/:id/predict` over real HTTP with the tiny model: LLaMA-Factory's predict with the model being
 * trained on an eval_dataset (the metrics, predictions and files of `do_predict`, the same as the engine's predict
 * with that model), and its 400s (no evaluation data, bad fields) and 409 (busy).
 */
import assert from "node:assert/strict";
import { parseTrainArgs, predict, readConfigFile } from "../engine/mod.ts";
import { ROOT, startServer, tinyArgs } from "./testing.ts";

Deno.test("predict: metrics, predictions and files of LF's predict with the session's model", async () => {
  const t = await startServer();
  try {
    const out = `${t.tmp}/run`;
    const { id } = (await t.call("POST", "/sessions", tinyArgs(out))).json;
    await t.call("POST", `/sessions/${id}/step`, { steps: 2 });

    // The demo session splits its eval data off (val_size): LF predicts (generating) on an eval_dataset only.
    const none = await t.call("POST", `/sessions/${id}/predict`, {});
    assert.deepEqual([none.status, none.json.field], [400, "eval_dataset"], none.text);
    assert.match(none.json.error, /no evaluation data/);
    for (const body of [{ max_samples: 0 }, { temperature: -1 }, { top_p: 2 }, { max_new_tokenz: 2 }]) {
      const bad = await t.call("POST", `/sessions/${id}/predict`, { eval_dataset: "whetstone_demo", ...body });
      assert.deepEqual([bad.status, bad.json.field], [400, Object.keys(body)[0]], bad.text);
    }
    const unknown = await t.call("POST", `/sessions/${id}/predict`, { eval_dataset: "nope" });
    assert.equal(unknown.status, 400, unknown.text);
    assert.match(unknown.json.error, /nope/);

    const body = { eval_dataset: "whetstone_demo", max_samples: 3, max_new_tokens: 6, do_sample: false };
    const r = await t.call("POST", `/sessions/${id}/predict`, body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, id);
    assert.equal(r.json.output_dir, `${out}/predict`);
    for (const k of ["predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime"]) {
      assert.equal(typeof r.json.metrics[k], "number", k);
    }
    assert.equal(r.json.predictions.length, 3);
    for (const p of r.json.predictions) {
      assert.match(p.prompt, /<\|im_start\|>user\n/);
      assert.ok(p.label.length > 0 && typeof p.predict === "string");
    }
    assert.deepEqual(
      r.json.files,
      ["generated_predictions.jsonl", "predict_results.json", "all_results.json"]
        .map((f) => `${out}/predict/${f}`),
    );
    const lines = (await Deno.readTextFile(`${out}/predict/generated_predictions.jsonl`)).trim().split("\n");
    assert.deepEqual(lines.map((l) => JSON.parse(l)), r.json.predictions);
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(`${out}/predict/predict_results.json`))["predict_bleu-4"],
      r.json.metrics["predict_bleu-4"],
    );

    // The same as the engine's predict with the trained adapter loaded from its checkpoint (greedy: same texts).
    const saved = (await t.call("POST", `/sessions/${id}/save`)).json.checkpoint;
    const { config: _, ...tiny } = tinyArgs(out);
    const config = { ...(await readConfigFile(`${ROOT}/examples/demo_lora_sft.yaml`)), ...tiny, ...body };
    const a = parseTrainArgs(
      {
        ...config,
        model_name_or_path: `${ROOT}/fixtures/tiny/model`,
        dataset_dir: `${ROOT}/fixtures/demo`,
        adapter_name_or_path: saved,
        val_size: 0,
        output_dir: `${t.tmp}/cli`,
        predict_with_generate: true,
        do_train: false,
        do_predict: true,
      },
      [],
      "test",
    );
    const cli = await predict(a, { log: () => {}, progress: false });
    assert.deepEqual(cli.predictions.map((p) => p.label), r.json.predictions.map((p: { label: string }) => p.label));
    assert.deepEqual(cli.predictions.map((p) => p.prompt), r.json.predictions.map((p: { prompt: string }) => p.prompt));
    const again = await t.call("POST", `/sessions/${id}/predict`, body);
    assert.deepEqual(again.json.predictions, r.json.predictions, "greedy predictions repeat");
    assert.deepEqual(
      cli.predictions.map((p) => p.predict),
      r.json.predictions.map((p: { predict: string }) => p.predict),
    );
  } finally {
    await t.close();
  }
});

Deno.test("predict: a busy session is a 409, an unknown one a 404, a stage without predict a 400", async () => {
  const t = await startServer();
  try {
    const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/run`, { max_steps: 30 }))).json;
    assert.equal((await t.call("POST", `/sessions/${id}/run`)).status, 202);
    const busy = await t.call("POST", `/sessions/${id}/predict`, { eval_dataset: "whetstone_demo" });
    assert.equal(busy.status, 409, busy.text);
    assert.equal((await t.call("POST", `/sessions/${id}/stop`)).status, 200);
    assert.equal((await t.call("POST", "/sessions/nope/predict", {})).status, 404);
    // Stage dpo has no predict in LF: a 400 saying so.
    const dpo = (await t.call("POST", "/sessions", {
      config: "examples/demo_dpo.yaml",
      output_dir: `${t.tmp}/dpo`,
      max_steps: 2,
      cutoff_len: 128,
    })).json.id;
    const no = await t.call("POST", `/sessions/${dpo}/predict`, { eval_dataset: "whetstone_pref" });
    assert.equal(no.status, 400, no.text);
    assert.match(no.json.error, /prediction for stage dpo is not supported/);
  } finally {
    await t.close();
  }
});
