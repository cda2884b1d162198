/**
 * Server-sent events: a streamed `text/event-stream` response written by an async function, ended when it
 * returns or when the client goes away (its `signal` aborts then).
 * @module
 */

/** What the writer of an event stream gets. */
export interface SseWriter {
  /** Sends one event: `data` (JSON-encoded unless a string), with an `event:` name when given. */
  send(data: unknown, event?: string): void;
  /** Sends a comment line (keeps the connection alive; clients ignore it). */
  comment(text: string): void;
  /** Aborts when the client disconnects. */
  readonly signal: AbortSignal;
}

/** A streaming response whose events `run` writes; the stream ends when `run` settles. */
export function sseResponse(run: (w: SseWriter) => Promise<void>): Response {
  const enc = new TextEncoder();
  const ac = new AbortController();
  let closed = false;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      const write = (s: string) => {
        if (closed) return;
        try {
          controller.enqueue(enc.encode(s));
        } catch {
          closed = true;
        }
      };
      const w: SseWriter = {
        send(data, event) {
          const text = typeof data === "string" ? data : JSON.stringify(data);
          write(`${event ? `event: ${event}\n` : ""}${text.split("\n").map((l) => `data: ${l}`).join("\n")}\n\n`);
        },
        comment(text) {
          write(`: ${text}\n\n`);
        },
        signal: ac.signal,
      };
      run(w)
        .catch((e) => w.send({ error: (e as Error).message }, "error"))
        .finally(() => {
          if (closed) return;
          closed = true;
          controller.close();
        });
    },
    cancel() {
      closed = true;
      ac.abort();
    },
  });
  return new Response(stream, {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}
