/**
 * `deno task train config.yaml [key=value ...]`: a whole run from a LLaMA-Factory-style config (see
 * engine/train/from_config.ts), with its exit codes.
 * @module
 */
import { splitTrainCommand } from "../engine/config/args.ts";
import { trainFromConfig } from "../engine/train/from_config.ts";

const USAGE = "usage: deno task train config.yaml [key=value ...]";

/** CLI entry; returns the exit code (2: usage, 1: the run failed). */
export async function trainMain(argv: string[]): Promise<number> {
  try {
    const { config, overrides } = splitTrainCommand(argv);
    if (!config) {
      console.error(USAGE);
      return 2;
    }
    await trainFromConfig(config, overrides);
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
}
