import assert from "node:assert/strict";
import { findOnPath, JsonlFollower, LF_CLI_LOG, type LfEvent, LfRun } from "./runner_lf.ts";

const STANDIN = new URL("../fixtures/llamafactory_standin/llamafactory-cli", import.meta.url).pathname;

async function yamlIn(dir: string, extra = ""): Promise<string> {
  const yaml = `${dir}/training_args.yaml`;
  await Deno.writeTextFile(yaml, `model_name_or_path: m\noutput_dir: ${dir}\ndo_train: true\n${extra}`);
  return yaml;
}

Deno.test("findOnPath: the first executable of that name on the PATH given", async () => {
  const dir = STANDIN.slice(0, STANDIN.lastIndexOf("/"));
  assert.equal(await findOnPath("llamafactory-cli", `/nonexistent::${dir}:/usr/bin`), STANDIN);
  assert.equal(await findOnPath("llamafactory-cli", "/nonexistent"), null);
  assert.equal(await findOnPath("README.md", dir), null, "not executable");
});

Deno.test("JsonlFollower: holds a torn line until its newline, skips old lines, restarts on a cut file", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/trainer_log.jsonl`;
  await Deno.writeTextFile(path, '{"current_steps": 1}\n');
  const f = new JsonlFollower(path);
  await f.skipExisting();
  assert.deepEqual(await f.poll(), []);
  await Deno.writeTextFile(path, '{"current_steps": 2, "lo', { append: true });
  assert.deepEqual(await f.poll(), []);
  await Deno.writeTextFile(path, 'ss": 1.5}\n{"current_steps": 3}\n', { append: true });
  assert.deepEqual(await f.poll(), [{ current_steps: 2, loss: 1.5 }, { current_steps: 3 }]);
  await Deno.writeTextFile(path, '{"current_steps": 1}\n'); // overwritten, shorter
  assert.deepEqual(await f.poll(), [{ current_steps: 1 }]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("LfRun: follows trainer_log.jsonl into step and eval events, then done with the exit code", async () => {
  const dir = await Deno.makeTempDir();
  const env = { STANDIN_STEPS: "4", STANDIN_SLEEP: "0.1", STANDIN_EVAL_AT: "2" };
  try {
    const run = await LfRun.start({ cli: STANDIN, yaml: await yamlIn(dir), outputDir: dir, pollMs: 50, env });
    const events: LfEvent[] = [];
    run.on((e) => events.push(e));
    await run.ended;
    assert.deepEqual(events.flatMap((e) => e.type === "step" ? [e.data.current_steps] : []), [1, 2, 3, 4]);
    assert.deepEqual(events.flatMap((e) => e.type === "eval" ? [e.data.eval_loss] : []), [2.5]);
    assert.deepEqual(events.at(-1), { type: "done", data: { exit_code: 0, signal: null, stopped: false } });
    assert.deepEqual(run.lastStep?.loss, 2.6);
    assert(run.tail.includes("Saving model checkpoint"), run.tail);
    assert((await Deno.readTextFile(`${dir}/${LF_CLI_LOG}`)).includes("Running training"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LfRun: a refused YAML ends with the stand-in's exit code and its stderr in the tail", async () => {
  const dir = await Deno.makeTempDir();
  const run = await LfRun.start({ cli: STANDIN, yaml: await yamlIn(dir, "executor: auto\n"), outputDir: dir });
  await run.ended;
  assert.deepEqual(run.exitCode, 1);
  assert(run.tail.includes("['executor']"), run.tail);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("LfRun.stop: SIGABRT stops at the step boundary; ignored, SIGKILL after the grace period", async () => {
  for (const ignore of [false, true]) {
    const dir = await Deno.makeTempDir();
    const env = { STANDIN_STEPS: "100", STANDIN_SLEEP: "0.1", STANDIN_IGNORE_ABORT: ignore ? "1" : "0" };
    try {
      const yaml = await yamlIn(dir);
      const run = await LfRun.start({ cli: STANDIN, yaml, outputDir: dir, pollMs: 50, graceMs: 800, env });
      await new Promise<void>((resolve) => run.on((e) => e.type === "step" && resolve()));
      const t0 = performance.now();
      await run.stop();
      const took = performance.now() - t0;
      assert(!run.running && run.stopped);
      assert((run.lastStep?.current_steps as number) < 100);
      if (ignore) {
        assert.deepEqual(run.signal, "SIGKILL");
        assert(took >= 700, `killed after ${took} ms`);
      } else {
        assert.deepEqual(run.exitCode, 0);
        assert(run.tail.includes("training aborted"), run.tail);
        assert(took < 700, `stopped after ${took} ms`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
