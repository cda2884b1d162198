/**
 * The stages by name: each entry sets its stage up on a loaded model (its value head, reference or reward model,
 * and the trainable names it adds) before the optimizer states are made and a checkpoint is restored, and then makes
 * the {@link Stage} the session drives. A new stage is a new file in this folder and one entry here.
 * @module
 */
import type { TrainArgs } from "../../config/args.ts";
import type { Model } from "../../nn/model.ts";
import { generateOptionsOf } from "../../config/views.ts";
import type { PreparedData } from "../run_inputs.ts";
import { LmStage } from "./lm.ts";
import { PpoStage, type RewardFunction, setupPpo } from "./ppo.ts";
import { PrefStage, setupPref } from "./pref.ts";
import type { Stage, StageContext } from "./stage.ts";

/** A stage set up on its model, before the session's optimizer exists. */
export interface StageSetup {
  /** The trainable parameter names (rm and ppo append their value head's). */
  trainable: string[];
  /** Bytes the stage stores besides the policy and its adapter. */
  extraBytes: number;
  /** Whether the stage's objective has an f16 path (fp16 mixed precision). */
  f16: boolean;
  /** Whether the objective has dropout of its own (rm: TRL's dropout before the value head), fed a seed. */
  dropout: boolean;
  /** The stage, once the session's context exists. */
  make(ctx: StageContext): Stage;
}

/** What a stage's setup is given. */
export interface SetupInput {
  args: TrainArgs;
  model: Model;
  trainable: readonly string[];
  data: PreparedData;
  log: (line: string) => void;
  /** Stage ppo: score responses with this function instead of `reward_model`. */
  reward?: RewardFunction;
}

const lm = (name: "pt" | "sft") => (i: SetupInput): Promise<StageSetup> =>
  Promise.resolve({
    trainable: [...i.trainable],
    extraBytes: 0,
    f16: true,
    dropout: false,
    make: (ctx) => new LmStage(name, ctx),
  });

async function pref(i: SetupInput): Promise<StageSetup> {
  const setup = await setupPref(i.args, i.model, i.trainable, i.log);
  return {
    trainable: setup.trainable,
    extraBytes: setup.extraBytes,
    f16: true,
    // rm: TRL's dropout before the value head; dpo and kto: LF turns dropout off (their objective declares no seed).
    dropout: setup.objective.stage === "rm",
    make: (ctx) => new PrefStage(ctx, setup),
  };
}

async function ppo(i: SetupInput): Promise<StageSetup> {
  const a = i.args;
  if (a.resume_from_checkpoint) {
    throw new Error("resume_from_checkpoint: `resume_from_checkpoint` will be supported in the future version.");
  }
  if (a.eval_dataset || a.val_size > 0) throw new Error("PPOTrainer does not support eval dataset yet.");
  if (!a.reward_model && !i.reward) throw new Error("reward_model: `reward_model` is necessary for PPO training.");
  const setup = await setupPpo(a, i.model, i.trainable, i.log, i.reward);
  // ppo generates with LF's generating arguments (GeneratingArguments, as in its PPO example's `### generate`).
  const gen = {
    ...generateOptionsOf(a),
    stop: i.model.stopIds(i.data.stop),
    vocabLimit: i.data.template.tokenizer.idLimit,
  };
  const tokens = { pad: i.data.template.padId, eos: i.data.template.eosId };
  return {
    trainable: setup.trainable,
    extraBytes: setup.extraBytes,
    f16: false,
    dropout: false,
    make: (ctx) => new PpoStage(ctx, setup, gen, tokens),
  };
}

/** The stages by LLaMA-Factory's `stage` name. */
export const STAGES: Record<TrainArgs["stage"], (i: SetupInput) => Promise<StageSetup>> = {
  pt: lm("pt"),
  sft: lm("sft"),
  rm: pref,
  dpo: pref,
  kto: pref,
  ppo,
};

/** Sets up the stage `i.args.stage` names. */
export function setupStage(i: SetupInput): Promise<StageSetup> {
  const make = STAGES[i.args.stage];
  if (!make) throw new Error(`stage: expected one of ${Object.keys(STAGES).join(", ")}, got ${i.args.stage}`);
  return make(i);
}
