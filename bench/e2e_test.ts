import assert from "node:assert/strict";
import { e2eYaml, phasesOf, sampledTokens, samplePrompt, trainerBatches } from "./e2e.ts";
import { parseTrainArgs } from "../engine/config/args.ts";
import { epochOrder } from "../engine/train/batches.ts";

Deno.test("e2eYaml: LoRA and full configs parse as the train task parses them, with the issue's settings", () => {
  for (const method of ["lora", "full"] as const) {
    const a = parseTrainArgs(e2eYaml("/m", method, 10, "/o"), [], `${method}.yaml`);
    assert.equal(a.finetuning_type, method);
    assert.deepEqual(
      [a.stage, a.per_device_train_batch_size, a.cutoff_len, a.max_steps, a.template, a.output_dir],
      ["sft", 4, 256, 10, "smollm2", "/o"],
    );
    // LF's default: gradient checkpointing on; the bench's "off" runs say so in the YAML.
    assert.equal(a.disable_gradient_checkpointing, false);
    const off = parseTrainArgs(e2eYaml("/m", method, 10, "/o", false), [], `${method}.yaml`);
    assert.equal(off.disable_gradient_checkpointing, true);
  }
});

Deno.test("trainerBatches: the trainer's seeded order a epoch, rows padded to a 64 bucket, the order wrapping", () => {
  const records = Array.from({ length: 10 }, (_, i) => ({
    input_ids: Array.from({ length: 10 + i * 9 }, () => i + 1),
    attention_mask: Array.from({ length: 10 + i * 9 }, () => 1),
    labels: Array.from({ length: 10 + i * 9 }, () => i + 1),
  }));
  const batches = trainerBatches(records, 4, 4, 42);
  // 10 records by 4: 3 steps an epoch (4, 4, 2 rows), the 4th step starts epoch 1.
  assert.deepEqual(batches.map((b) => b.input_ids.length), [4, 4, 2, 4]);
  const order0 = epochOrder(10, 42, 0), order1 = epochOrder(10, 42, 1);
  const firstIds = (b: (typeof batches)[number]) => b.input_ids.map((row) => row[0]);
  assert.deepEqual(firstIds(batches[0]), order0.slice(0, 4).map((i) => i + 1));
  assert.deepEqual(firstIds(batches[2]), order0.slice(8).map((i) => i + 1));
  assert.deepEqual(firstIds(batches[3]), order1.slice(0, 4).map((i) => i + 1));
  for (const b of batches) {
    const longest = Math.max(...b.attention_mask.map((m) => m.filter(Boolean).length));
    const L = b.input_ids[0].length;
    assert.equal(L, Math.ceil(longest / 64) * 64, "the longest row rounded up to 64");
    assert.ok(
      b.labels.every((row, r) => row.slice(b.attention_mask[r].filter(Boolean).length).every((x) => x === -100)),
    );
  }
});

Deno.test("phasesOf: a run's [timings] lines summed into setup, compile, steps and final seconds", () => {
  const log = [
    "Task train deno run main.ts train x.yaml",
    "[timings] 0.600 s (+0.600) start-up (deno, modules) [rss 90 MiB, heap 10 MiB]",
    "[timings] 3.600 s (+3.000) model load [rss 900 MiB, heap 10 MiB]",
    "[timings] 3.800 s (+0.200) trace step:lm:adamw:64 [rss 900 MiB, heap 10 MiB]",
    "[timings] 7.800 s (+4.000) session create (built, 19815 nodes) [rss 900 MiB, heap 10 MiB]",
    "[timings] 9.800 s (+2.000) step 1 [rss 900 MiB, heap 10 MiB]",
    "step 2/2  loss 10.1",
    "[timings] 11.300 s (+1.500) step 2 [rss 900 MiB, heap 10 MiB]",
    "[timings] 11.600 s (+0.300) final: model saved [rss 900 MiB, heap 10 MiB]",
    "[timings] 12.100 s (+0.500; own 0.400) symbolic: loaded from the cache [rss 900 MiB, heap 10 MiB]",
    "[timings] 14.100 s (+2.000) final: sample answer (31 tokens) [rss 900 MiB, heap 10 MiB]",
  ].join("\n");
  assert.deepEqual(phasesOf(log), { setup_s: 3.6, compile_s: 4.7, steps_s: 3.5, final_s: 2.3 });
  assert.equal(sampledTokens(log), 31);
  assert.equal(sampledTokens("no timings"), undefined);
  assert.deepEqual(phasesOf("no timings"), { setup_s: 0, compile_s: 0, steps_s: 0, final_s: 0 });
});

Deno.test("samplePrompt: the first record's tokens before its answer, as the train verb's sample answer", () => {
  const rec = (ids: number[], labels: number[]) => ({ input_ids: ids, attention_mask: ids.map(() => 1), labels });
  assert.deepEqual(samplePrompt([rec([5, 6, 7, 8], [-100, -100, 7, 8]), rec([1], [1])]), [5, 6]);
  assert.deepEqual(samplePrompt([rec([5, 6], [5, 6])]), [5, 6], "no prompt part: the whole record");
});
