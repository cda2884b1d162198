import assert from "node:assert/strict";
import { formatProgress, Progress, type ProgressSink } from "./progress.ts";

function sink(tty: boolean): ProgressSink & { text: () => string } {
  const chunks: Uint8Array[] = [];
  return {
    writeSync(p: Uint8Array) {
      chunks.push(p.slice());
      return p.length;
    },
    isTerminal: () => tty,
    text: () => chunks.map((c) => new TextDecoder().decode(c)).join(""),
  };
}

Deno.test("formatProgress renders bar, percentage, loss, throughput and H:MM:SS times", () => {
  assert.equal(
    formatProgress(12, 100, { loss: 2.31, tokensPerSec: 1839.6 }, 35, 252, 10),
    "12/100 [>         ] 12% loss 2.3100 1840 tok/s 0:00:35<0:04:12",
  );
  assert.equal(formatProgress(55, 100, {}, 3700, 90000, 10), "55/100 [====>     ] 55% 1:01:40<1 day, 1:00:00");
  assert.equal(formatProgress(100, 100, {}, 0, 0, 4), "100/100 [====] 100% 0:00:00<0:00:00");
  assert.equal(formatProgress(0, 100, {}, 0, 0, 4), "0/100 [    ] 0% 0:00:00<0:00:00");
});

Deno.test("Progress on a TTY redraws in place at most every 100 ms", () => {
  let t = 0;
  const out = sink(true);
  const p = new Progress({ total: 10, out, now: () => t, width: 10 });
  assert.equal(p.mode, "bar");
  t = 1000;
  p.update(1, { loss: 3 }); // drawn
  t = 1050;
  p.update(2, { loss: 2.5 }); // throttled
  t = 1100;
  p.update(3, { loss: 2 }); // drawn (100 ms later)
  t = 1150;
  p.update(4, { loss: 1.9 }); // throttled, pending
  p.println("eval loss 1.8");
  t = 2000;
  p.update(10, { loss: 1.5 }); // last step always drawn
  p.done();
  const frames = out.text();
  assert.deepEqual(frames.split("\r").filter((f) => f).map((f) => f.replaceAll("\x1b[K", "").split(" ")[0]), [
    "1/10",
    "3/10",
    "eval", // the message clears the bar ...
    "4/10", // ... which is redrawn below it with the latest step
    "10/10",
  ]);
  assert.ok(frames.includes("\r\x1b[Keval loss 1.8\n"));
  assert.ok(frames.endsWith("\x1b[K\n"));
  assert.ok(frames.includes("10/10 [==========] 100% loss 1.5000 0:00:02<0:00:00"));
});

Deno.test("Progress prints plain lines every N steps when not a TTY, nothing in mode none", () => {
  let t = 0;
  const out = sink(false);
  const p = new Progress({ total: 7, every: 3, out, now: () => t, startStep: 1, width: 7 });
  assert.equal(p.mode, "lines");
  for (let s = 2; s <= 7; s++) {
    t += 2000;
    p.update(s, { loss: 1 });
  }
  p.done();
  // Step 3: 2 steps in 4 s -> 4 left * 2 s.
  assert.deepEqual(out.text().split("\n"), [
    "3/7 [==>    ] 42% loss 1.0000 0:00:04<0:00:08",
    "6/7 [=====> ] 85% loss 1.0000 0:00:10<0:00:02",
    "7/7 [=======] 100% loss 1.0000 0:00:12<0:00:00",
    "",
  ]);
  const quiet = sink(true);
  const q = new Progress({ total: 3, mode: "none", out: quiet });
  q.update(1);
  q.update(3);
  q.done();
  assert.equal(quiet.text(), "");
});
