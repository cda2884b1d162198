import assert from "node:assert/strict";
import type { TrainArgs } from "./args.ts";
import { type ArgsOf, effectOf, I, T, typed, U } from "./key_spec.ts";
import { GENERATING_KEYS, GROUP_OF, KEY_GROUPS, KEYS } from "./keys.ts";

/** Compiles only when A and B are the same type. */
type Equals<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false;
const same = <A, B>(ok: Equals<A, B>) => assert.equal(ok, true);

Deno.test("ArgsOf derives each train row's type from its kind, default and options", () => {
  const table = {
    b: T("bool", false),
    n: T("num", null, { min: 0 }),
    i: T("int", 3),
    s: T("str", "x"),
    l: T("list", null),
    all: T("list", "all", { all: true }),
    e: T(["a", "b", "c"], "a", { lacking: ["c"] }),
    en: T(["a", "b"], "a", { nullable: true }),
    d: T("dict", {}),
    r: T("resume", null),
    t: typed<number>()(T("num", null)),
    gone: U(false, "x"),
    quiet: I(0),
  };
  type A = ArgsOf<typeof table>;
  same<
    A,
    {
      b: boolean;
      n: number | null;
      i: number;
      s: string;
      l: string[] | null;
      all: "all" | string[];
      e: "a" | "b";
      en: "a" | "b" | null;
      d: Record<string, unknown>;
      r: string | boolean | null;
      t: number;
    }
  >(true);
  // The real table: a few fields whose types used to be hand-written.
  same<TrainArgs["stage"], "pt" | "sft" | "rm" | "ppo" | "dpo" | "kto">(true);
  same<TrainArgs["optim"], "adamw" | "sgd" | "adafactor" | "lion_32bit" | "adamw_8bit">(true);
  same<TrainArgs["model_name_or_path"], string>(true);
  same<TrainArgs["lora_alpha"], number>(true);
  same<TrainArgs["lora_target"], "all" | string[]>(true);
  same<TrainArgs["enable_thinking"], boolean | null>(true);
  same<TrainArgs["save_strategy"], "no" | "steps" | "epoch">(true);
  same<TrainArgs["max_new_tokens"], number>(true);
});

Deno.test("effectOf: train rows act unless marked inert, ignored rows are inert, unsupported rows are errors", () => {
  assert.equal(effectOf(T("bool", false)), "implemented");
  assert.equal(effectOf(T("bool", false, { inert: "why" })), "inert");
  assert.equal(effectOf(I(false)), "inert");
  assert.equal(effectOf(U(false)), "error");
});

Deno.test("every key is in exactly one LF group, and KEYS is their union", () => {
  const counts = new Map<string, number>();
  for (const table of Object.values(KEY_GROUPS)) {
    for (const k of Object.keys(table)) counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  assert.deepEqual([...counts].filter(([, n]) => n > 1), [], "keys in two groups");
  assert.deepEqual([...counts.keys()].sort(), Object.keys(KEYS).sort());
  assert.equal(GROUP_OF.max_new_tokens, "generating");
  assert.equal(GROUP_OF.cutoff_len, "data");
  assert.equal(GROUP_OF.lora_rank, "finetuning");
  assert.equal(GROUP_OF.model_name_or_path, "model");
  assert.equal(GROUP_OF.learning_rate, "training");
  assert.ok(Object.hasOwn(GENERATING_KEYS, "top_p"));
});
