/**
 * TensorBoard event files: the framing and protos equal, byte for byte, what tensorboard's own RecordWriter and
 * protos write (fixtures/tensorboard/golden.tfevents, made by make_events.py); a run with `report_to: tensorboard`
 * writes HF's tags under logging_dir, checked by a parser here (framing, masked CRC-32C, Event / Summary protos) and,
 * where a Python with the `tensorboard` package is at hand ($TENSORBOARD_PYTHON, else .venv/bin/python), by
 * TensorBoard's EventAccumulator reading them back.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../../config/args.ts";
import { makeTinyModel } from "../testing.ts";
import { train } from "../trainer.ts";
import { crc32c, defaultLogDir, eventBytes, maskedCrc32c, tensorBoardScalars, tfRecord } from "./tensorboard.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const GOLDEN = `${ROOT}fixtures/tensorboard/golden.tfevents`;

/** Reads protobuf fields: number → values (varint as bigint, fixed64/32 as bytes, length-delimited as bytes). */
function fields(b: Uint8Array): Map<number, (bigint | Uint8Array)[]> {
  const out = new Map<number, (bigint | Uint8Array)[]>();
  let i = 0;
  const varint = () => {
    let v = 0n, shift = 0n;
    for (;;) {
      const x = b[i++];
      v |= BigInt(x & 0x7f) << shift;
      if (!(x & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const key = Number(varint()), field = key >> 3, wire = key & 7;
    let v: bigint | Uint8Array;
    if (wire === 0) v = varint();
    else if (wire === 1) v = b.slice(i, i += 8);
    else if (wire === 5) v = b.slice(i, i += 4);
    else if (wire === 2) {
      const n = Number(varint());
      v = b.slice(i, i += n);
    } else throw new Error(`wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), v]);
  }
  return out;
}

interface Ev {
  wallTime: number;
  step: number;
  fileVersion?: string;
  scalars: Record<string, number>;
}

/** Splits TFRecords (checking both masked CRCs) and decodes each Event. */
function readEvents(bytes: Uint8Array): Ev[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Ev[] = [];
  for (let off = 0; off < bytes.length;) {
    const len = Number(view.getBigUint64(off, true));
    assert.equal(view.getUint32(off + 8, true), maskedCrc32c(bytes.subarray(off, off + 8)), "length crc");
    const data = bytes.subarray(off + 12, off + 12 + len);
    assert.equal(view.getUint32(off + 12 + len, true), maskedCrc32c(data), "data crc");
    off += 16 + len;
    const f = fields(data);
    const f64 = (x: Uint8Array) => new DataView(x.buffer, x.byteOffset).getFloat64(0, true);
    const ev: Ev = {
      wallTime: f64(f.get(1)![0] as Uint8Array),
      step: Number(f.get(2)?.[0] ?? 0n),
      scalars: {},
    };
    if (f.has(3)) ev.fileVersion = new TextDecoder().decode(f.get(3)![0] as Uint8Array);
    for (const s of f.get(5) ?? []) {
      for (const v of fields(s as Uint8Array).get(1) ?? []) {
        const vf = fields(v as Uint8Array);
        const tag = new TextDecoder().decode(vf.get(1)![0] as Uint8Array);
        const x = vf.get(2)![0] as Uint8Array;
        ev.scalars[tag] = new DataView(x.buffer, x.byteOffset).getFloat32(0, true);
      }
    }
    out.push(ev);
  }
  return out;
}

Deno.test("CRC-32C: the check value of the Castagnoli polynomial", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
});

Deno.test("events equal tensorboard's own RecordWriter and protos, byte for byte", async () => {
  const golden = await Deno.readFile(GOLDEN);
  const mine = [
    eventBytes(1700000000.25, 0, { fileVersion: "brain.Event:2" }),
    eventBytes(1700000001.5, 1, { scalars: { "train/loss": 2.75, "train/learning_rate": 1e-4 } }),
    eventBytes(1700000002.0, 300, { scalars: { "eval/loss": -0.5 } }),
  ].map(tfRecord);
  const bytes = new Uint8Array(mine.reduce((n, r) => n + r.length, 0));
  mine.reduce((off, r) => (bytes.set(r, off), off + r.length), 0);
  assert.deepEqual(bytes, golden);
  const evs = readEvents(golden);
  assert.equal(evs[0].fileVersion, "brain.Event:2");
  assert.deepEqual([evs[1].step, evs[2].step, evs[2].scalars], [1, 300, { "eval/loss": -0.5 }]);
  assert.equal(evs[1].wallTime, 1700000001.5);
});

Deno.test("HF's rewrite_logs tags; numbers only; HF's default_logdir", () => {
  assert.deepEqual(
    tensorBoardScalars({ loss: 1, eval_loss: 2, test_acc: 3, learning_rate: 4, epoch: 0.5, note: "x" }),
    { "train/loss": 1, "eval/loss": 2, "test/acc": 3, "train/learning_rate": 4, "train/epoch": 0.5 },
  );
  assert.equal(defaultLogDir("out/", new Date(2026, 0, 5, 7, 8, 9), "box"), "out/runs/Jan05_07-08-09_box");
});

async function tensorBoardPython(): Promise<string | undefined> {
  for (const py of [Deno.env.get("TENSORBOARD_PYTHON"), `${ROOT}.venv/bin/python`]) {
    if (!py) continue;
    try {
      const r = await new Deno.Command(py, {
        args: ["-c", "import tensorboard.backend.event_processing.event_accumulator"],
        stdout: "null",
        stderr: "null",
      }).output();
      if (r.success) return py;
    } catch { /* not there */ }
  }
  return undefined;
}

Deno.test("report_to: tensorboard — a run writes HF's scalars under logging_dir; TensorBoard reads them", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-tb-" });
  try {
    const model = await makeTinyModel(`${root}/model`);
    const a = parseTrainArgs({
      model_name_or_path: model,
      stage: "sft",
      do_train: true,
      dataset: "whetstone_demo",
      dataset_dir: `${ROOT}fixtures/demo`,
      template: "qwen",
      cutoff_len: 64,
      max_samples: 16,
      val_size: 4,
      eval_strategy: "steps",
      eval_steps: 2,
      output_dir: `${root}/out`,
      logging_dir: `${root}/tb`,
      logging_steps: 1,
      per_device_train_batch_size: 2,
      learning_rate: 1e-2,
      max_steps: 3,
      report_to: "tensorboard",
    });
    const res = await train(a, { progress: false, log: () => {} });
    const files = [...Deno.readDirSync(`${root}/tb`)].map((e) => e.name);
    assert.equal(files.length, 1);
    assert.match(files[0], /^events\.out\.tfevents\.\d{10}\..+\.\d+\.0$/);
    const evs = readEvents(await Deno.readFile(`${root}/tb/${files[0]}`));
    assert.equal(evs[0].fileVersion, "brain.Event:2");
    const series = (tag: string) => evs.filter((e) => tag in e.scalars).map((e) => [e.step, e.scalars[tag]]);
    const f32 = (x: number) => Math.fround(x);
    assert.deepEqual(series("train/loss").slice(0, 3), res.losses.map((l) => [l.step, f32(l.loss)]));
    const lr = res.logHistory.filter((h) => h.learning_rate !== undefined);
    assert.deepEqual(series("train/learning_rate"), lr.map((h) => [h.step, f32(h.learning_rate!)]));
    assert.equal(series("train/grad_norm").length, 3);
    assert.deepEqual(series("eval/loss").map(([s]) => s), [2, 3], "evaluation at step 2 and the final one");
    assert.ok(series("train/train_runtime").length === 1, "the final metrics, as HF's Trainer.log writes them");
    for (const e of evs.slice(1)) assert.ok(Math.abs(e.wallTime - Date.now() / 1000) < 600);

    const py = await tensorBoardPython();
    if (!py) {
      console.warn("skipping the EventAccumulator read-back: no Python with tensorboard ($TENSORBOARD_PYTHON)");
      return;
    }
    const script = `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1]); acc.Reload()
print(json.dumps({t: [[e.step, e.value] for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}))`;
    const r = await new Deno.Command(py, { args: ["-c", script, `${root}/tb`] }).output();
    assert.ok(r.success, new TextDecoder().decode(r.stderr));
    const read = JSON.parse(new TextDecoder().decode(r.stdout)) as Record<string, [number, number][]>;
    for (const tag of ["train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "eval/loss"]) {
      assert.deepEqual(read[tag], series(tag), tag);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
