/**
 * `deepspeed: path/to/ds_config.json` (HF `TrainingArguments.deepspeed`, carried by LLaMA-Factory's `train_full`
 * examples). Whetstone trains on one device, where DeepSpeed's ZeRO stages only partition states over several
 * ranks (and offload them to the CPU): the run goes ahead as it would without the key, with a note naming the stage
 * and the offload the file asked for. Multi-GPU runs go through LLaMA-Factory itself (`runner: llamafactory` on the
 * HTTP API), which passes `deepspeed` on to llamafactory-cli.
 *
 * The file is read as HF reads it (a relative path from the working folder): a missing file or one that is not a
 * JSON object is an error naming the key and the path, as `HfTrainerDeepSpeedConfig` fails on it.
 * @module
 */
import { ConfigError } from "./train_args.ts";

/** What a DeepSpeed config asks for, as far as the note needs. */
export interface DeepSpeedRequest {
  /** `zero_optimization.stage` (0 when the file has no `zero_optimization`). */
  stage: number;
  /** "optimizer to cpu", "parameters to nvme", ...: the `offload_*` entries with a device other than "none". */
  offload: string[];
}

/** Reads the stage and offloads from a parsed DeepSpeed config. */
export function deepSpeedRequest(config: Record<string, unknown>): DeepSpeedRequest {
  const zero = config.zero_optimization;
  const z = zero !== null && typeof zero === "object" ? zero as Record<string, unknown> : {};
  const stage = typeof z.stage === "number" ? z.stage : Number(z.stage ?? 0);
  const offload: string[] = [];
  for (const [key, what] of [["offload_optimizer", "optimizer"], ["offload_param", "parameters"]] as const) {
    const o = z[key];
    const device = o !== null && typeof o === "object" ? (o as Record<string, unknown>).device : undefined;
    if (typeof device === "string" && device !== "none") offload.push(`${what} to ${device}`);
  }
  return { stage: Number.isFinite(stage) ? stage : 0, offload };
}

/** The note of a run on one device with `deepspeed` set. */
export function deepSpeedNote(path: string, r: DeepSpeedRequest): string {
  const off = r.offload.length ? ` with offload of the ${r.offload.join(" and ")}` : " without offload";
  return `${path} asks for DeepSpeed ZeRO stage ${r.stage}${off}; Whetstone trains on one device, so the run ` +
    "goes ahead as without DeepSpeed (nothing to partition or offload); for multi-GPU training use the " +
    "LLaMA-Factory runner (`runner: llamafactory`), which passes deepspeed on to llamafactory-cli";
}

/**
 * Reads the DeepSpeed config at `path` (relative paths from `base`, the working folder by default) and returns the
 * note for {@linkcode TrainArgs.warnings}, prefixed `deepspeed: `. Throws a {@linkcode ConfigError} naming the key
 * and the path when the file is missing or not a JSON object.
 */
export async function checkDeepSpeed(path: string, where = "<config>", base?: string): Promise<string> {
  const file = base && !path.startsWith("/") ? `${base.replace(/\/+$/, "")}/${path}` : path;
  const fail = (why: string): never => {
    throw new ConfigError(where, [`deepspeed: ${why}`]);
  };
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    fail(
      e instanceof Deno.errors.NotFound
        ? `no DeepSpeed config at ${path} (a JSON file such as LLaMA-Factory's examples/deepspeed/ds_z3_config.json)`
        : `cannot read ${path}: ${(e as Error).message}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    fail(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    fail(`${path} must hold a JSON object (a DeepSpeed config)`);
  }
  return `deepspeed: ${deepSpeedNote(path, deepSpeedRequest(parsed as Record<string, unknown>))}`;
}
