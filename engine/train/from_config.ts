/**
 * A whole run from a LLaMA-Factory-style config file: parses the arguments, checks the output folder (resuming from
 * its last checkpoint as LLaMA-Factory does), trains, and predicts when asked (`do_predict`; prediction only without
 * `do_train`). The `train` verb (cli/train.ts) is this plus exit codes.
 * @module
 */
import { checkOutputDir, ConfigError, loadTrainConfig } from "../config/args.ts";
import { predict, predictProblems } from "./predict.ts";
import { train } from "./trainer.ts";
import { mark } from "../util/timings.ts";

/** Runs the config at `config` with `key=value` overrides; notes go to stderr; throws on any problem. */
export async function trainFromConfig(config: string, overrides: readonly string[] = []): Promise<void> {
  mark("start-up (deno, modules)");
  const args = await loadTrainConfig(config, [...overrides]);
  mark("config");
  const problems = predictProblems(args);
  if (problems.length) throw new ConfigError(config, problems);
  const { resumeFrom, notes } = await checkOutputDir(args, config);
  for (const w of args.warnings) console.error(`note: ${w}`);
  for (const n of notes) console.error(`note: ${n}`);
  if (resumeFrom && !args.resume_from_checkpoint) args.resume_from_checkpoint = resumeFrom;
  if (args.do_predict && !args.do_train) return void await predict(args); // LF's prediction-only run
  const res = await train(args);
  const first = res.losses[0]?.loss, last = res.losses.at(-1)?.loss;
  if (first !== undefined && last !== undefined) {
    console.error(`loss ${first.toFixed(4)} → ${last.toFixed(4)} over ${res.globalStep} steps; see ${res.outputDir}`);
  }
  if (res.sample) {
    console.error(`\nA held-out prompt, answered by the trained model:\n${res.sample.prompt}${res.sample.answer}\n`);
  }
  if (args.do_predict) await predict(args, { model: res.model });
  mark("run done");
}
