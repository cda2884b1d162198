/**
 * `deno task train config.yaml [key=value ...]`: parses LLaMA-Factory-style arguments, checks the output
 * folder (resuming from its last checkpoint as LLaMA-Factory does), and runs the trainer.
 * @module
 */
import { checkOutputDir, ConfigError, loadTrainConfig, splitTrainCommand } from "../config/args.ts";
import { predict, predictProblems } from "./predict.ts";
import { train } from "./trainer.ts";

const USAGE = "usage: deno task train config.yaml [key=value ...]";

/** CLI entry; returns the exit code. */
export async function trainMain(argv: string[]): Promise<number> {
  try {
    const { config, overrides } = splitTrainCommand(argv);
    if (!config) {
      console.error(USAGE);
      return 2;
    }
    const args = await loadTrainConfig(config, overrides);
    const problems = predictProblems(args);
    if (problems.length) throw new ConfigError(config, problems);
    for (const w of args.warnings) console.error(`note: ${w}`);
    const { resumeFrom, notes } = await checkOutputDir(args, config);
    for (const n of notes) console.error(`note: ${n}`);
    if (resumeFrom && !args.resume_from_checkpoint) args.resume_from_checkpoint = resumeFrom;
    if (args.do_predict && !args.do_train) return (await predict(args), 0); // LF's prediction-only run
    const res = await train(args);
    const first = res.losses[0]?.loss, last = res.losses.at(-1)?.loss;
    if (first !== undefined && last !== undefined) {
      console.error(`loss ${first.toFixed(4)} → ${last.toFixed(4)} over ${res.globalStep} steps; see ${res.outputDir}`);
    }
    if (res.sample) {
      console.error(`\nA held-out prompt, answered by the trained model:\n${res.sample.prompt}${res.sample.answer}\n`);
    }
    if (args.do_predict) await predict(args, { model: res.model });
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
}
