/**
 * `deno task chat config.yaml [key=value ...]`: a terminal chat in the spirit of `llamafactory-cli chat`.
 * Reads lines from stdin, keeps the history, applies the chat template and streams the answer to stdout;
 * `exit` (or end of input) quits, `clear` forgets the history.
 *
 * Keys read from the YAML (LLaMA-Factory's names and defaults): model_name_or_path, adapter_name_or_path,
 * template, default_system, seed (0), and LF's generating arguments (the `generating` group of the key table,
 * engine/config/keys.ts: do_sample true, temperature 0.95, top_p 0.7, top_k 50, max_new_tokens 1024,
 * repetition_penalty 1.0, ...).
 * @module
 */
import { parseGroupArgs } from "../engine/config/args.ts";
import { backendKeyProblem } from "../engine/config/infer_backend.ts";
import { generateOptionsOf } from "../engine/config/views.ts";
import { readConfigFile } from "../engine/config/yaml_file.ts";
import { loadTokenizer } from "../engine/data/tokenizer.ts";
import { getTemplate, type TemplateMessage } from "../engine/data/template.ts";
import { resolveModel } from "../engine/io/hub.ts";
import { loadModel } from "../engine/nn/model.ts";
import type { GenerateOptions } from "../engine/nn/generate.ts";

/** The chat settings of a YAML config. */
export interface ChatArgs {
  modelNameOrPath: string;
  adapterNameOrPath?: string;
  template: string | null;
  defaultSystem: string | null;
  generation: Omit<GenerateOptions, "maxNewTokens" | "stop" | "onToken"> & { maxNewTokens: number };
}

/** Reads the chat keys of a parsed YAML config (other keys are ignored); throws naming a bad key. */
export function parseChatArgs(cfg: Record<string, unknown>): ChatArgs {
  const num = (key: string, dflt: number): number => {
    const v = cfg[key] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${key}: expected a number, got ${String(v)}`);
    return v;
  };
  const str = (key: string): string | null => {
    const v = cfg[key];
    if (v === undefined || v === null) return null;
    if (typeof v !== "string") throw new Error(`${key}: expected a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const backend = backendKeyProblem(cfg);
  if (backend) throw new Error(`${backend.field}: ${backend.message}`);
  const model = str("model_name_or_path");
  if (!model) throw new Error("model_name_or_path: required");
  const adapters = (str("adapter_name_or_path") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (adapters.length > 1) throw new Error(`adapter_name_or_path: one adapter is supported, got ${adapters.length}`);
  const gen = generateOptionsOf(parseGroupArgs(cfg, "generating", "config"));
  return {
    modelNameOrPath: model,
    adapterNameOrPath: adapters[0],
    template: str("template"),
    defaultSystem: str("default_system"),
    generation: { ...gen, seed: num("seed", 0) },
  };
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i).replace(/\r$/, "");
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** The `chat` verb: `deno task chat config.yaml [key=value ...]`; returns the exit code. */
export async function chatMain(argv: string[]): Promise<number> {
  const [path, ...overrides] = argv;
  if (!path) {
    console.error("usage: deno task chat config.yaml [key=value ...]");
    return 2;
  }
  const cfg = await readConfigFile(path, overrides);
  const args = parseChatArgs(cfg);
  const dir = await resolveModel(args.modelNameOrPath);
  const tok = await loadTokenizer(dir);
  const template = getTemplate(tok, { template: args.template, defaultSystem: args.defaultSystem });
  const model = await loadModel(dir, { adapter: args.adapterNameOrPath });
  const stop = model.stopIds(template.stopTokenIds());
  const out = Deno.stdout, enc = new TextEncoder();
  const write = (s: string) => out.writeSync(enc.encode(s));
  const history: TemplateMessage[] = [];
  write("Welcome to the CLI application, use `clear` to remove the history, use `exit` to exit the application.\n");
  write("\nUser: ");
  for await (const line of lines(Deno.stdin.readable)) {
    const query = line.trim();
    if (query === "exit") break;
    if (query === "clear") {
      history.length = 0;
      write("History has been removed.\n\nUser: ");
      continue;
    }
    history.push({ role: "user", content: query });
    const [prompt] = template.encodeOneturn([...history, { role: "assistant", content: "" }]);
    const ids: number[] = [];
    let shown = "";
    write("Assistant: ");
    await model.generate(prompt, {
      ...args.generation,
      stop,
      vocabLimit: template.tokenizer.idLimit,
      onToken: (t) => {
        if (stop.includes(t)) return;
        ids.push(t);
        const text = tok.decode(ids, { skipSpecialTokens: true });
        if (text.endsWith("\uFFFD")) return; // an incomplete UTF-8 sequence: wait for the next token
        write(text.slice(shown.length));
        shown = text;
      },
    });
    const answer = tok.decode(ids, { skipSpecialTokens: true });
    write(answer.slice(shown.length) + "\n\nUser: ");
    history.push({ role: "assistant", content: answer });
  }
  write("\n");
  return 0;
}
