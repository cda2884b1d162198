/** The train verb's exit codes: usage without a config, 1 with the problem named when the run cannot start. */
import assert from "node:assert/strict";
import { trainMain } from "./train.ts";

async function quietly(run: () => Promise<number>): Promise<{ code: number; err: string }> {
  const errors: string[] = [];
  const saved = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(" "));
  try {
    return { code: await run(), err: errors.join("\n") };
  } finally {
    console.error = saved;
  }
}

Deno.test("train verb: no config is a usage error (2)", async () => {
  const { code, err } = await quietly(() => trainMain([]));
  assert.equal(code, 2);
  assert.match(err, /usage: deno task train config\.yaml/);
});

Deno.test("train verb: a missing config file fails (1) naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const { code, err } = await quietly(() => trainMain([`${dir}/absent.yaml`, "learning_rate=1e-5"]));
    assert.equal(code, 1);
    assert.match(err, /^error: .*absent\.yaml/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
