/** The `chat` verb: two lines piped into the CLI with the tiny model get two answers; YAML keys parse. */
import assert from "node:assert/strict";
import { parseChatArgs } from "./chat.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("chat CLI answers two piped lines with the tiny model and exits on EOF", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const config = `${dir}/chat.yaml`;
    await Deno.writeTextFile(
      config,
      `model_name_or_path: ${root}fixtures/tiny/model\ntemplate: qwen\nmax_new_tokens: 8\ndo_sample: false\n`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-webgpu", `${root}main.ts`, "chat", config],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode("Hello\nWhat is the capital of France?\n"));
    await w.close();
    const { code, stdout, stderr } = await child.output();
    const out = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(out.match(/Assistant: /g)?.length, 2, out);
    const answers = out.split("Assistant: ").slice(1).map((s) => s.split("\n\nUser: ")[0]);
    assert.ok(answers.every((a) => a.trim().length > 0), out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseChatArgs: LLaMA-Factory keys and defaults, errors name the key", () => {
  const a = parseChatArgs({ model_name_or_path: "m", adapter_name_or_path: "a", temperature: 0.5, top_p: 0.9 });
  assert.equal(a.adapterNameOrPath, "a");
  assert.deepEqual(a.generation, {
    maxNewTokens: 1024,
    doSample: true,
    temperature: 0.5,
    topP: 0.9,
    topK: 50,
    repetitionPenalty: 1,
    seed: 0,
  });
  assert.throws(() => parseChatArgs({}), /model_name_or_path: required/);
  assert.throws(() => parseChatArgs({ model_name_or_path: "m", top_p: "x" }), /top_p: expected a number/);
  // Checked by the key table's rows, as the trainer checks them.
  assert.throws(
    () => parseChatArgs({ model_name_or_path: "m", top_p: 2 }),
    /top_p: expected a number in \[0, 1\], got 2/,
  );
  assert.throws(
    () => parseChatArgs({ model_name_or_path: "m", do_sample: "maybe" }),
    /do_sample: expected true or false/,
  );
  assert.equal(parseChatArgs({ model_name_or_path: "m", do_sample: "no" }).generation.doSample, false);
});

Deno.test("parseChatArgs: backends Whetstone lacks are refused, naming the key", () => {
  const m = { model_name_or_path: "m" };
  assert.equal(parseChatArgs({ ...m, infer_backend: "huggingface" }).modelNameOrPath, "m");
  for (const b of ["vllm", "sglang", "ktransformers"]) {
    assert.throws(
      () => parseChatArgs({ ...m, infer_backend: b }),
      new RegExp(`^Error: infer_backend: Whetstone has no ${b}`),
    );
  }
  assert.throws(() => parseChatArgs({ ...m, infer_backend: "tgi" }), /infer_backend: unknown inference backend "tgi"/);
  assert.throws(() => parseChatArgs({ ...m, vllm_maxlen: 4096 }), /vllm_maxlen: a vLLM setting; Whetstone has no vLLM/);
  assert.throws(() => parseChatArgs({ ...m, use_kt: true }), /use_kt: a KTransformers setting/);
  assert.equal(parseChatArgs({ ...m, vllm_maxlen: null, use_kt: false }).modelNameOrPath, "m");
});
