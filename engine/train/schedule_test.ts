import assert from "node:assert/strict";
import {
  loggedLrAt,
  lrAt,
  scheduleFromArgs,
  type ScheduleOptions,
  type SchedulerType,
  warmupStepsOf,
} from "./schedule.ts";
import { PlateauScheduler } from "./schedule_plateau.ts";

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
  assert.throws(() => lrAt(0, { ...base, type: "poly" as SchedulerType }), /expected one of/);
  assert.throws(() => lrAt(0, { ...base, type: "polynomial", lrEnd: 1e-3 }), /lr_end \(0.001\) must be smaller/);
  assert.throws(() => lrAt(0, { ...base, type: "warmup_stable_decay" }), /num_decay_steps is required/);
  assert.throws(() => lrAt(0, { ...base, type: "reduce_lr_on_plateau" }), /follows the evaluations/);
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
  const cw = { ...a, lr_scheduler_type: "cosine_warmup_with_min_lr" };
  assert.deepEqual(scheduleFromArgs({ ...cw, lr_scheduler_kwargs: { min_lr_rate: 0.1, warmup_lr_rate: 0.2 } }, 50), {
    type: "cosine_warmup_with_min_lr",
    baseLr: 1e-4,
    warmupSteps: 5,
    totalSteps: 50,
    minLrRate: 0.1,
    warmupLrRate: 0.2,
  });
  assert.throws(() => scheduleFromArgs(cw, 50), /cosine_warmup_with_min_lr: expected one of minLr or minLrRate/);
  assert.throws(
    () => scheduleFromArgs({ ...cw, lr_scheduler_kwargs: { min_lr: 1e-6, warmup_lr_rate: "0.2" } }, 50),
    /lr_scheduler_kwargs: warmup_lr_rate: expected a number, got "0.2"/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...cw, lr_scheduler_kwargs: { min_lr: 1e-6, warmup_ratio: 0.2 } }, 50),
    /lr_scheduler_kwargs: cosine_warmup_with_min_lr takes num_cycles, min_lr, min_lr_rate, warmup_lr_rate, got "war/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...a, lr_scheduler_type: "linear", lr_scheduler_kwargs: { num_cycles: 1 } }, 50),
    /linear takes no arguments, got "num_cycles"/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...a, lr_scheduler_type: "cosine", lr_scheduler_kwargs: { num_cycles: "2" } }, 50),
    /num_cycles: expected a number/,
  );
  assert.throws(() => scheduleFromArgs({ ...a, lr_scheduler_type: "wsd" }, 50), /lr_scheduler_type: expected one of/);
  const wsd = { ...a, lr_scheduler_type: "warmup_stable_decay" };
  // LLaMA-Factory's defaults: of the 45 steps after warmup, 15 stable and 30 decaying.
  assert.deepEqual(scheduleFromArgs(wsd, 50), {
    type: "warmup_stable_decay",
    baseLr: 1e-4,
    warmupSteps: 5,
    totalSteps: 50,
    stableSteps: 15,
    decaySteps: 30,
  });
  const only = scheduleFromArgs({ ...wsd, lr_scheduler_kwargs: { num_decay_steps: 10 } }, 50);
  assert.equal(only.stableSteps, 15, "num_stable_steps keeps LF's default when only num_decay_steps is set");
  assert.throws(
    () => scheduleFromArgs({ ...wsd, lr_scheduler_kwargs: { num_decay_steps: 5, decay_type: "exp" } }, 50),
    /decay_type: expected one of linear, cosine, 1-sqrt, got "exp"/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...wsd, lr_scheduler_kwargs: { num_decay_steps: 2.5 } }, 50),
    /num_decay_steps: expected an integer/,
  );
  assert.throws(
    () => scheduleFromArgs({ ...a, lr_scheduler_type: "reduce_lr_on_plateau", lr_scheduler_kwargs: { mode: "up" } }, 9),
    /mode: expected one of min, max/,
  );
  assert.equal(
    scheduleFromArgs({ ...a, lr_scheduler_type: "constant", lr_scheduler_kwargs: { anything: 1 } }, 50).type,
    "constant",
  );
});

interface MoreCase {
  type: SchedulerType;
  base_lr: number;
  total_steps: number;
  warmup_steps: number;
  kwargs: Record<string, unknown>;
  lrs: number[];
}

const more: {
  cases: MoreCase[];
  plateau: { base_lr: number; kwargs: Record<string, unknown>; metrics: number[]; lrs: number[] }[];
} = JSON.parse(await Deno.readTextFile(new URL("../../fixtures/schedules/more.json", import.meta.url)));

Deno.test("restarts, polynomial, inverse_sqrt, wsd and cosine_warmup_with_min_lr match transformers' get_scheduler", () => {
  const types = new Set(more.cases.map((c) => c.type));
  assert.deepEqual([...types].sort(), [
    "cosine_warmup_with_min_lr",
    "cosine_with_restarts",
    "inverse_sqrt",
    "polynomial",
    "warmup_stable_decay",
  ]);
  for (const c of more.cases) {
    const kwargs = { ...c.kwargs };
    // get_wsd_schedule's own default (LLaMA-Factory fills in a third of the steps instead; tested below).
    if (c.type === "warmup_stable_decay" && kwargs.num_stable_steps === undefined) {
      kwargs.num_stable_steps = c.total_steps - c.warmup_steps - (kwargs.num_decay_steps as number);
    }
    const o = scheduleFromArgs({
      lr_scheduler_type: c.type,
      learning_rate: c.base_lr,
      warmup_steps: c.warmup_steps,
      lr_scheduler_kwargs: kwargs,
    }, c.total_steps);
    // Past the end too (total + 1 steps): polynomial's lr_end tail, wsd's min_lr_ratio tail.
    c.lrs.forEach((lr, k) =>
      close(lrAt(k, o), lr, `${c.type} ${JSON.stringify(c.kwargs)} total ${c.total_steps} ${k}`)
    );
  }
});

Deno.test("PlateauScheduler matches torch's ReduceLROnPlateau", () => {
  assert.ok(more.plateau.length >= 5);
  for (const c of more.plateau) {
    const s = PlateauScheduler.fromKwargs(c.base_lr, c.kwargs);
    const got = c.metrics.map((m) => (s.step(m), s.lr));
    got.forEach((lr, k) => close(lr, c.lrs[k], `plateau ${JSON.stringify(c.kwargs)} after metric ${k}`));
  }
  // The fixtures do cut the lr (the test cannot pass with a constant lr).
  assert.ok(more.plateau.some((c) => c.lrs.at(-1)! < c.base_lr));
  assert.throws(() => new PlateauScheduler(1e-4, { factor: 1 }), /Factor should be < 1.0/);
});
