/**
 * `deno task llama_pro --model_name_or_path DIR --output_dir DIR --num_expand N`: LLaMA-Factory's
 * `scripts/llama_pro.py` (block expansion for LLaMA Pro); the work is engine/nn/llama_pro.ts.
 * @module
 */
import { resolveModel } from "../engine/io/hub.ts";
import { expandBlocks } from "../engine/nn/llama_pro.ts";

const USAGE = "usage: deno task llama_pro --model_name_or_path DIR --output_dir DIR --num_expand N";

/** Parses `--key value` / `--key=value` pairs (the script's fire flags). */
function flags(argv: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z_]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) throw new Error(`llama_pro: unexpected argument ${JSON.stringify(argv[i])}\n${USAGE}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new Error(`llama_pro: --${m[1]} needs a value\n${USAGE}`);
    out.set(m[1], value);
  }
  return out;
}

/** The `llama_pro` verb; returns the exit code. */
export async function llamaProMain(argv: string[]): Promise<number> {
  const f = flags(argv);
  const src = f.get("model_name_or_path"), dst = f.get("output_dir"), n = Number(f.get("num_expand"));
  for (const k of f.keys()) {
    if (!["model_name_or_path", "output_dir", "num_expand"].includes(k)) {
      throw new Error(`llama_pro: unknown flag --${k}\n${USAGE}`);
    }
  }
  if (!src || !dst || !f.has("num_expand")) {
    console.error(USAGE);
    return 2;
  }
  await expandBlocks(await resolveModel(src), dst, n, (l) => console.log(l));
  console.log("- Fine-tune this model with:");
  console.log(`model_name_or_path: ${dst}`);
  console.log("finetuning_type: freeze");
  console.log(`freeze_trainable_layers: ${n}`);
  console.log("use_llama_pro: true");
  return 0;
}
