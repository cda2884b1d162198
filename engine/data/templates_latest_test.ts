/**
 * The template classes of LF's newest templates, spelled out on text (the goldens in template_test.ts check the ids):
 * `Glm47ReasoningTemplate`'s empty thought, `MossVLTemplate`'s tool text without a system prompt, phi4_mini's
 * `StringFormatter` tools, gemma4's thought words and system slot.
 */
import assert from "node:assert/strict";
import { goldenTemplate } from "./data_goldens.ts";
import { TEMPLATES } from "./template.ts";

const M = [
  { role: "user", content: "How are you" },
  { role: "assistant", content: "I am fine!" },
  { role: "user", content: "你好" },
  { role: "assistant", content: "很高兴认识你！" },
];
const TOOLS = JSON.stringify([{ name: "f", description: "d", parameters: { type: "object", properties: {} } }]);

Deno.test("glm4_7 and aeva: the empty thought is `</think>` alone (LF's Glm47ReasoningTemplate)", async () => {
  for (const name of ["glm4_7", "aeva"]) {
    const tpl = await goldenTemplate(name);
    const dec = (ids: number[]) => tpl.tokenizer.decode(ids);
    const [, answer] = tpl.encodeOneturn(M);
    assert.equal(dec(answer), "</think>\n很高兴认识你！", name);
    const off = await goldenTemplate(name, { enable_thinking: false });
    const [prompt, plain] = off.encodeOneturn(M);
    assert.ok(dec(prompt).endsWith("<|user|>\n你好<|assistant|></think>"), name);
    assert.equal(dec(plain), "\n很高兴认识你！", name);
  }
  assert.equal(TEMPLATES.get("qwen3_5")!.emptyThoughtCloseOnly, false);
});

Deno.test("moss_vl: without a system prompt the tool text loses its leading newlines (LF's MossVLTemplate)", async () => {
  const tpl = await goldenTemplate("moss_vl");
  const dec = (ids: number[]) => tpl.tokenizer.decode(ids);
  const [prompt] = tpl.encodeOneturn(M.slice(0, 2), null, TOOLS);
  assert.ok(dec(prompt).startsWith("<|im_start|>system\n# Tools\n\nYou may call"), dec(prompt));
  const [withSystem] = tpl.encodeOneturn(M.slice(0, 2), "Be brief.", TOOLS);
  assert.ok(dec(withSystem).startsWith("<|im_start|>system\nBe brief.\n\n# Tools\n\n"), dec(withSystem));
  const qwen = await goldenTemplate("qwen3_5_nothink");
  assert.ok(
    qwen.tokenizer.decode(qwen.encodeOneturn(M.slice(0, 2), null, TOOLS)[0]).startsWith("<|im_start|>system\n\n\n"),
  );
});

Deno.test("phi4_mini: the raw tools text inside <|tool|>...<|/tool|>, even an empty list", async () => {
  const tpl = await goldenTemplate("phi4_mini");
  const dec = (ids: number[]) => tpl.tokenizer.decode(ids);
  const [prompt] = tpl.encodeOneturn(M.slice(0, 2), null, "[]");
  assert.equal(dec(prompt), "<|system|><|tool|>[]<|/tool|><|end|><|user|>How are you<|end|><|assistant|>");
  const [p2] = tpl.encodeOneturn(M.slice(0, 2), "S", TOOLS);
  assert.ok(dec(p2).startsWith(`<|system|>S<|tool|>${TOOLS}<|/tool|><|end|>`));
});

Deno.test("gemma4: <|think|> in the system slot, a default system prompt, <|channel>thought words", async () => {
  const tpl = await goldenTemplate("gemma4");
  const dec = (ids: number[]) => tpl.tokenizer.decode(ids);
  const [prompt, answer] = tpl.encodeOneturn(M.slice(0, 2));
  assert.equal(
    dec(prompt),
    "<bos><|turn>system\n<|think|>You are a helpful assistant.<turn|>\n<|turn>user\nHow are you<turn|>\n<|turn>model\n",
  );
  assert.equal(dec(answer), "<|channel>thought\n<channel|>I am fine!<turn|>\n");
});
