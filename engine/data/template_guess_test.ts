import assert from "node:assert/strict";
import { guessTemplate, templateNames } from "./template_guess.ts";

Deno.test("guessTemplate: chat template markers first, then model_type; null when unknown", async () => {
  const tiny = JSON.parse(
    await Deno.readTextFile(new URL("../../fixtures/tiny/model/tokenizer_config.json", import.meta.url)),
  );
  assert.equal(guessTemplate({ modelType: "qwen2", chatTemplate: tiny.chat_template }), "qwen");
  assert.equal(guessTemplate({ modelType: "qwen3", chatTemplate: "<|im_start|>{{ m }}" }), "qwen3");
  assert.equal(guessTemplate({ modelType: "llama", chatTemplate: "<|start_header_id|>user" }), "llama3");
  assert.equal(guessTemplate({ modelType: "llama", chatTemplate: "[INST] {{ m }} [/INST]" }), "llama2");
  assert.equal(guessTemplate({ modelType: "mistral", chatTemplate: "[INST] {{ m }} [/INST]" }), "mistral");
  assert.equal(guessTemplate({ modelType: "gemma3_text", chatTemplate: "<start_of_turn>user" }), "gemma3");
  assert.equal(guessTemplate({ modelType: "smollm", chatTemplate: "<|im_start|>" }), "chatml");
  assert.equal(guessTemplate({ modelType: "gemma2" }), "gemma2");
  assert.equal(guessTemplate({ modelType: "llama" }), null);
  assert.equal(guessTemplate({}), null);
  const names = templateNames();
  assert.ok(names.includes("qwen") && names.includes("llama3") && names.includes("empty"));
  assert.deepEqual(names, [...names].sort());
});
