/**
 * Whetstone's one entry point.
 *
 * - `deno task serve [flags]` (or `deno serve -A main.ts`, configured by the environment): the HTTP API.
 * - `deno run -A main.ts <verb> ...`: CLI verbs in the spirit of `llamafactory-cli`.
 * @module
 */
import type { Server } from "./routes/app.ts";

let served: Promise<Server> | undefined;

/** `deno serve` entry: the app, its settings from the environment (see routes/options.ts), made on first use. */
export default {
  fetch(req: Request): Promise<Response> {
    served ??= (async () => {
      const [{ createServer }, { serveOptions }] = await Promise.all([
        import("./routes/app.ts"),
        import("./routes/options.ts"),
      ]);
      return await createServer(serveOptions([]).options);
    })();
    return served.then((s) => s.fetch(req));
  },
};

/** Starts the HTTP API (`deno task serve [flags]`) and serves until SIGINT/SIGTERM; returns the exit code. */
async function serveMain(args: string[]): Promise<number> {
  const { createServer } = await import("./routes/app.ts");
  const { serveOptions } = await import("./routes/options.ts");
  let server: Server;
  let listen: { hostname: string; port: number };
  try {
    const o = serveOptions(args);
    listen = o.listen;
    server = await createServer(o.options);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return 2;
  }
  const roots = server.context.roots.dirs.join(", ");
  const http = Deno.serve({
    ...listen,
    onListen: ({ hostname, port }) =>
      console.error(`whetstone: listening on http://${hostname}:${port}/ (roots: ${roots})`),
  }, server.fetch);
  const stop = async () => {
    await http.shutdown();
    await server.close();
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(sig, stop);
    } catch { /* SIGTERM is not available on Windows */ }
  }
  await http.finished;
  return 0;
}

/** True when this process is `deno serve main.ts` (its entry is the default export; no CLI verb is given). */
function runByDenoServe(): boolean {
  try {
    return Deno.readTextFileSync("/proc/self/cmdline").split("\0")[1] === "serve";
  } catch {
    return false;
  }
}

const VERBS: Record<string, { help: string; run: (args: string[]) => Promise<number> }> = {
  chat: {
    help: "chat with a model in the terminal from a YAML config: deno task chat config.yaml [key=value ...]",
    run: async (args) => (await import("./cli/chat.ts")).chatMain(args),
  },
  demo: {
    help: "trace, differentiate and replay a short training run of a tiny model on WebGPU, printing the loss",
    run: async (args) => (await import("./cli/demo.ts")).demoMain(args),
  },
  export: {
    help: "merge an adapter and write a Hugging Face model folder: deno task export config.yaml [key=value ...]",
    run: async (args) => (await import("./cli/export.ts")).exportMain(args),
  },
  llama_pro: {
    help: "LLaMA Pro block expansion: deno task llama_pro --model_name_or_path DIR --output_dir DIR --num_expand N",
    run: async (args) => (await import("./cli/llama_pro.ts")).llamaProMain(args),
  },
  preprocess: {
    help: "tokenize the datasets of a YAML config as LLaMA-Factory would (--out file.jsonl)",
    run: async (args) => (await import("./cli/preprocess.ts")).preprocessMain(args),
  },
  serve: {
    help: "start the HTTP API: deno task serve [--host 127.0.0.1] [--port 8000] [--roots dir,dir] [--state-dir dir] " +
      "[--model dir --adapter dir --template name] [--max-batch 8] [--max-queue 64] (env HOST, PORT, WHETSTONE_ROOTS, WHETSTONE_API_KEY, ...)",
    run: serveMain,
  },
  train: {
    help: "train from a LLaMA-Factory style YAML config: deno task train config.yaml [key=value ...]",
    run: async (args) => (await import("./cli/train.ts")).trainMain(args),
  },
};

function usage(): string {
  return "usage: deno task <verb> [args]\n\nverbs:\n" +
    Object.entries(VERBS).map(([k, v]) => `  ${k.padEnd(8)} ${v.help}`).join("\n");
}

if (import.meta.main && !runByDenoServe()) {
  const [verb, ...rest] = Deno.args;
  const v = verb ? VERBS[verb] : undefined;
  if (!v) {
    console.error(verb ? `unknown verb "${verb}"\n\n${usage()}` : usage());
    Deno.exit(2);
  }
  Deno.exit(await v.run(rest));
}
