/**
 * Server-sent events read from a fetch body (EventSource cannot send the Authorization header): yields each
 * event's name and data as the server writes them.
 * @module
 */

/**
 * @typedef {{ event: string, data: string }} SseEvent
 */

/**
 * The events of a `text/event-stream` response body, in order; ends with the body.
 * @param {Response} res
 * @returns {AsyncGenerator<SseEvent>}
 */
export async function* readSse(res) {
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value.replaceAll("\r\n", "\n");
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          const text = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
          if (field === "event") event = text;
          else if (field === "data") data.push(text);
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  } finally {
    reader.releaseLock();
  }
}
