import assert from "node:assert/strict";
import { TEMPLATES } from "./template.ts";
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
  // multimodal models get their template's text side; a chat template whose markers the model_type's template lacks
  // falls back to the marker's family
  assert.equal(guessTemplate({ modelType: "qwen3_vl", chatTemplate: "<|im_start|>" }), "qwen3_vl");
  assert.equal(guessTemplate({ modelType: "qwen2_5_omni", chatTemplate: "<|im_start|>" }), "qwen2_omni");
  assert.equal(guessTemplate({ modelType: "qwen3_omni_moe", chatTemplate: "<|im_start|>" }), "qwen3_omni");
  assert.equal(guessTemplate({ modelType: "mllama", chatTemplate: "<|start_header_id|>user" }), "mllama");
  assert.equal(guessTemplate({ modelType: "llava_next", chatTemplate: "<|start_header_id|>user" }), "llama3");
  assert.equal(guessTemplate({ modelType: "llava", chatTemplate: "USER: {{ m }} ASSISTANT:" }), "llava");
  assert.equal(guessTemplate({ modelType: "paligemma", chatTemplate: "<start_of_turn>user" }), "gemma");
  assert.equal(guessTemplate({ modelType: "glm4v_moe" }), "glm4_5v");
  assert.equal(guessTemplate({ modelType: "qwen3_5_moe", chatTemplate: "<|im_start|>" }), "qwen3_5");
  assert.equal(guessTemplate({ modelType: "gemma4", chatTemplate: "<|turn>user" }), "gemma4");
  assert.equal(guessTemplate({ modelType: "lfm2", chatTemplate: "<|im_start|>" }), "lfm2");
  const names = templateNames();
  assert.ok(names.includes("qwen") && names.includes("llama3") && names.includes("empty"));
  assert.deepEqual(names, [...names].sort());
  // GET /templates lists every registered template, the multimodal ones' text side included
  assert.deepEqual(names, [...TEMPLATES.keys()].sort());
  assert.ok(names.includes("qwen2_audio") && names.includes("llava_next_video_yi"));
});
