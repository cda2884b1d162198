/**
 * A PyTorch baseline as a separate process that stays up between rounds: the bench starts `bench/<script>` with the
 * configured Python (bench/torch_python.ts) and a JSON argument, waits for its first stdout line (`{"ready": ...}`),
 * then sends one JSON request a line on stdin and reads one JSON answer a line from stdout. Idle, it waits on stdin and
 * costs no CPU, so Whetstone's rounds and PyTorch's can alternate on the same machine.
 * @module
 */
import { torchPython } from "./torch_python.ts";

/** A running baseline process. */
export class TorchWorker {
  readonly ready: Record<string, unknown>;
  #child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #script: string;

  private constructor(
    script: string,
    child: Deno.ChildProcess,
    lines: ReadableStreamDefaultReader<string>,
    ready: Record<string, unknown>,
  ) {
    this.#script = script;
    this.#child = child;
    this.#lines = lines;
    this.#stdin = child.stdin.getWriter();
    this.ready = ready;
  }

  /**
   * Starts `bench/<script> '<json arg>'`; undefined (with the reason) when no Python with torch is configured. Throws
   * when the script fails before it is ready (its stderr is inherited, so the traceback shows).
   */
  static async start(script: string, arg: unknown): Promise<TorchWorker | { absent: string }> {
    const py = await torchPython();
    if (!py.ok) return { absent: py.reason };
    const path = new URL(`./${script}`, import.meta.url).pathname;
    const child = new Deno.Command(py.python, {
      args: [path, JSON.stringify(arg)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines()).getReader();
    const first = await lines.read();
    if (first.done) {
      const st = await child.status;
      throw new Error(`${script}: expected a ready line, the process exited with code ${st.code}`);
    }
    return new TorchWorker(script, child, lines, JSON.parse(first.value));
  }

  /** Sends one request and returns the answer line, parsed. */
  async request<T>(req: unknown): Promise<T> {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
    const line = await this.#lines.read();
    if (line.done) throw new Error(`${this.#script}: expected an answer to ${JSON.stringify(req)}, got end of output`);
    return JSON.parse(line.value) as T;
  }

  /** Closes stdin (the script exits at end of input) and waits for the process. */
  async close(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    this.#lines.releaseLock();
    await this.#child.stdout.cancel().catch(() => {});
    await this.#child.status;
  }
}

/** A stream of text chunks to a stream of lines (without their "\n"). */
function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, out) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const p of parts) out.enqueue(p);
    },
    flush(out) {
      if (rest) out.enqueue(rest);
    },
  });
}
