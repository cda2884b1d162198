/**
 * Whetstone's one entry point.
 *
 * - `deno serve -A main.ts` (or `deno task serve`): the HTTP API.
 * - `deno run -A main.ts <verb> ...`: CLI verbs in the spirit of `llamafactory-cli`.
 * @module
 */
import { createApp } from "./routes/app.ts";

const app = createApp();

/** `deno serve` entry. */
export default { fetch: app.fetch };

const VERBS: Record<string, { help: string; run: (args: string[]) => Promise<number> }> = {
  chat: {
    help: "chat with a model in the terminal from a YAML config: deno task chat config.yaml [key=value ...]",
    run: async (args) => (await import("./engine/nn/chat_cli.ts")).chatMain(args),
  },
  demo: {
    help: "trace, differentiate and replay a short training run of a tiny model on WebGPU, printing the loss",
    run: async (args) => (await import("./engine/train/demo.ts")).demoMain(args),
  },
  export: {
    help: "merge an adapter and write a Hugging Face model folder: deno task export config.yaml [key=value ...]",
    run: async (args) => (await import("./engine/nn/export.ts")).exportMain(args),
  },
  preprocess: {
    help: "tokenize the datasets of a YAML config as LLaMA-Factory would (--out file.jsonl)",
    run: async (args) => (await import("./engine/data/preprocess_cli.ts")).preprocessMain(args),
  },
  serve: {
    help: "start the HTTP API (--port N, default 8000)",
    run: (args) => {
      const i = args.indexOf("--port");
      const port = i >= 0 ? Number(args[i + 1]) : 8000;
      Deno.serve({ port }, app.fetch);
      return new Promise(() => {});
    },
  },
  train: {
    help: "train from a LLaMA-Factory style YAML config: deno task train config.yaml [key=value ...]",
    run: async (args) => (await import("./engine/train/cli.ts")).trainMain(args),
  },
};

function usage(): string {
  return "usage: deno task <verb> [args]\n\nverbs:\n" +
    Object.entries(VERBS).map(([k, v]) => `  ${k.padEnd(8)} ${v.help}`).join("\n");
}

if (import.meta.main) {
  const [verb, ...rest] = Deno.args;
  const v = verb ? VERBS[verb] : undefined;
  if (!v) {
    console.error(verb ? `unknown verb "${verb}"\n\n${usage()}` : usage());
    Deno.exit(2);
  }
  Deno.exit(await v.run(rest));
}
