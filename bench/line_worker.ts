/**
 * A bench's side process that stays up between rounds: started with a JSON argument, it prints one ready line (a
 * JSON object), then answers each JSON request line on its stdin with one JSON line on its stdout, and exits at the
 * end of its stdin. Idle, it waits on stdin and costs no CPU, so two sides' rounds can alternate on one machine.
 * The PyTorch baselines (torch_worker.ts) and bench "scale"'s Whetstone side (scale_worker.ts) are such processes.
 * @module
 */

/** A running line worker. */
export class LineWorker {
  readonly ready: Record<string, unknown>;
  #child: Deno.ChildProcess;
  #lines: ReadableStreamDefaultReader<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #label: string;

  protected constructor(
    label: string,
    child: Deno.ChildProcess,
    lines: ReadableStreamDefaultReader<string>,
    ready: Record<string, unknown>,
  ) {
    this.#label = label;
    this.#child = child;
    this.#lines = lines;
    this.#stdin = child.stdin.getWriter();
    this.ready = ready;
  }

  /**
   * Spawns `cmd args` (stderr inherited, so a traceback shows) and waits for its ready line. Throws, naming `label`,
   * when the process ends before printing one.
   */
  protected static async spawn(
    label: string,
    cmd: string,
    args: string[],
  ): Promise<{ child: Deno.ChildProcess; lines: ReadableStreamDefaultReader<string>; ready: Record<string, unknown> }> {
    const child = new Deno.Command(cmd, { args, stdin: "piped", stdout: "piped", stderr: "inherit" }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines()).getReader();
    const first = await lines.read();
    if (first.done) {
      const st = await child.status;
      throw new Error(`${label}: expected a ready line, the process exited with code ${st.code}`);
    }
    return { child, lines, ready: JSON.parse(first.value) };
  }

  /** Starts `cmd args` as a line worker (see the module doc). */
  static async launch(label: string, cmd: string, args: string[]): Promise<LineWorker> {
    const { child, lines, ready } = await LineWorker.spawn(label, cmd, args);
    return new LineWorker(label, child, lines, ready);
  }

  /** Sends one request and returns the answer line, parsed. */
  async request<T>(req: unknown): Promise<T> {
    await this.#stdin.write(new TextEncoder().encode(JSON.stringify(req) + "\n"));
    const line = await this.#lines.read();
    if (line.done) throw new Error(`${this.#label}: expected an answer to ${JSON.stringify(req)}, got end of output`);
    return JSON.parse(line.value) as T;
  }

  /** Closes stdin (the worker exits at end of input) and waits for the process. */
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
