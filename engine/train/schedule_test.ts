import assert from "node:assert/strict";
import {
  loggedLrAt,
  lrAt,
  scheduleFromArgs,
  type ScheduleOptions,
  type SchedulerType,
  warmupStepsOf,
} from "./schedule.ts";

interface GoldenCase {
  type: SchedulerType;
  base_lr: number;
  total_steps: number;
  warmup_arg: number;
  warmup_steps: number;
  num_cycles?: number;
  min_lr?: number;
  min_lr_rate?: number;
  used: number[];
  after: number[];
  logged: number[];
}

const golden: { cases: GoldenCase[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/schedules/golden.json", import.meta.url)),
);

function close(actual: number, expected: number, what: string): void {
  const tol = 1e-12 * Math.abs(expected);
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: expected ${expected}, got ${actual}`);
}

Deno.test("lrAt / loggedLrAt match transformers' Trainer at every step", () => {
  assert.ok(golden.cases.length > 30);
  for (const c of golden.cases) {
    const warmupSteps = warmupStepsOf(
      c.warmup_arg >= 1 ? c.warmup_arg : 0,
      c.warmup_arg < 1 ? c.warmup_arg : 0,
      c.total_steps,
    );
    const name = `${c.type} total ${c.total_steps} warmup ${c.warmup_arg} ${
      c.min_lr ?? c.min_lr_rate ?? c.num_cycles ?? ""
    }`;
    assert.equal(warmupSteps, c.warmup_steps, `${name}: warmup steps`);
    // transformers 5 also takes the ratio through warmup_steps itself.
    assert.equal(warmupStepsOf(c.warmup_arg, 0, c.total_steps), c.warmup_steps, `${name}: warmup steps (v5 form)`);
    const o: ScheduleOptions = {
      type: c.type,
      baseLr: c.base_lr,
      warmupSteps,
      totalSteps: c.total_steps,
      numCycles: c.num_cycles,
      minLr: c.min_lr,
      minLrRate: c.min_lr_rate,
    };
    const kwargs = Object.fromEntries(
      (["num_cycles", "min_lr", "min_lr_rate"] as const).filter((k) => c[k] !== undefined).map((k) => [k, c[k]]),
    );
    const fromArgs = scheduleFromArgs(
      { lr_scheduler_type: c.type, learning_rate: c.base_lr, warmup_steps: c.warmup_arg, lr_scheduler_kwargs: kwargs },
      c.total_steps,
    );
    for (let k = 0; k < c.total_steps; k++) {
      close(lrAt(k, fromArgs), c.used[k], `${name}: lr used by step ${k} (scheduleFromArgs)`);
      close(lrAt(k, o), c.used[k], `${name}: lr used by step ${k}`);
      close(lrAt(k + 1, o), c.after[k], `${name}: scheduler lr after step ${k}`);
      close(loggedLrAt(k + 1, o), c.logged[k], `${name}: logged lr at global step ${k + 1}`);
      close(loggedLrAt(k + 1, o, true), c.after[k], `${name}: legacy logged lr at global step ${k + 1}`);
    }
  }
});

Deno.test("warmupStepsOf follows HF's rules", () => {
  assert.equal(warmupStepsOf(5, 0.5, 100), 5); // explicit steps win
  assert.equal(warmupStepsOf(0, 0.1, 37), 4); // ceil(3.7)
  assert.equal(warmupStepsOf(0, 0, 37), 0);
  assert.equal(warmupStepsOf(0.05, 0, 100), 5);
  assert.equal(warmupStepsOf(2.7, 0, 100), 2);
  assert.throws(() => warmupStepsOf(-1, 0, 10), /warmup_steps/);
  assert.throws(() => warmupStepsOf(0, 2, 10), /warmup_ratio/);
});

Deno.test("lrAt validates its inputs", () => {
  const base = { baseLr: 1e-4, warmupSteps: 0, totalSteps: 10 };
  assert.throws(() => lrAt(0, { ...base, type: "cosine_with_min_lr" }), /one of minLr or minLrRate/);
  assert.throws(() => lrAt(0, { ...base, type: "cosine_with_min_lr", minLr: 1e-6, minLrRate: 0.1 }), /only one/);
  assert.throws(() => lrAt(-1, { ...base, type: "linear" }), /step integer/);
  assert.throws(() => lrAt(0, { ...base, type: "polynomial" as SchedulerType }), /expected one of/);
  assert.throws(() => loggedLrAt(0, { ...base, type: "linear" }), /global step/);
  // Past the end the linear schedule stays at 0 (HF clamps with max(0, ...)).
  assert.equal(lrAt(12, { ...base, type: "linear" }), 0);
});

Deno.test("scheduleFromArgs maps HF kwargs and rejects unknown ones", () => {
  const a = { learning_rate: 1e-4, warmup_steps: 0, warmup_ratio: 0.1 };
  assert.deepEqual(
    scheduleFromArgs({ ...a, lr_scheduler_type: "cosine_with_min_lr", lr_scheduler_kwargs: { min_lr: 1e-6 } }, 50),
    { type: "cosine_with_min_lr", baseLr: 1e-4, warmupSteps: 5, totalSteps: 50, minLr: 1e-6 },
  );
  assert.throws(() => scheduleFromArgs({ ...a, lr_scheduler_type: "cosine_with_min_lr" }, 50), /one of minLr/);
  assert.throws(
    () => scheduleFromArgs({ ...a, lr_scheduler_type: "linear", lr_scheduler_kwargs: { num_cycles: 1 } }, 50),
    /for linear: expected keys among none, got "num_cycles"/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...a, lr_scheduler_type: "cosine", lr_scheduler_kwargs: { num_cycles: "2" } }, 50),
    /num_cycles: expected a number/,
  );
  assert.throws(() => scheduleFromArgs({ ...a, lr_scheduler_type: "wsd" }, 50), /lr_scheduler_type: expected one of/);
  assert.equal(
    scheduleFromArgs({ ...a, lr_scheduler_type: "constant", lr_scheduler_kwargs: { anything: 1 } }, 50).type,
    "constant",
  );
});
