/** The board's status: "running" only while the session trains, not while a generation or export holds it. */
import assert from "node:assert/strict";
import { shownStatus, stateStatus } from "./status.js";

Deno.test("board status: a generation, evaluation, save or export holding the session is not a training run", () => {
  assert.equal(shownStatus("running", "step", 12, 30), "running");
  assert.equal(shownStatus("running", "llamafactory-cli train", 12, 30), "running");
  for (const busy of ["generate", "evaluate", "save", "export"]) {
    assert.equal(shownStatus("running", busy, 30, 30), "finished", busy);
    assert.equal(shownStatus("running", busy, 12, 30), "ready", busy);
  }
  assert.equal(shownStatus("stopped", null, 12, 30), "stopped");
  assert.equal(shownStatus("finished", null, 30, 30), "finished");
});

Deno.test("board status: an events stream's state event", () => {
  assert.equal(stateStatus({ busy: "step", finished: false }, "ready"), "running");
  assert.equal(stateStatus({ busy: "generate", finished: true }, "running"), "finished");
  assert.equal(stateStatus({ busy: "generate", finished: false }, "running"), "ready");
  assert.equal(stateStatus({ busy: null, finished: false }, "stopped"), "stopped");
});
