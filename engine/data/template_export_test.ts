/**
 * The chat template an export writes (template_export.ts), against fixtures/chat_export/goldens.json (transformers'
 * `apply_chat_template` on the exported tokenizer folders, made by fixtures/chat_export/make_goldens.py): Whetstone
 * still writes the Jinja the goldens were made from, @huggingface/jinja renders it to transformers' text and ids,
 * and Whetstone's own template encodes each conversation to the same ids — for qwen, llama3 and llama2.
 */
import assert from "node:assert/strict";
import { CASES, writeCaseFolders } from "../../fixtures/chat_export/cases.ts";
import { getTemplate } from "./template.ts";
import { jinjaChatTemplate, writeTemplateFiles } from "./template_export.ts";
import { loadTokenizer } from "./tokenizer.ts";

interface Golden {
  cases: {
    name: string;
    chat_template: string;
    modelfile: string;
    conversations: { messages: { role: string; content: string }[]; text: string; ids: number[] }[];
  }[];
}

const golden: Golden = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/chat_export/goldens.json", import.meta.url)),
);

Deno.test("export chat template: transformers' apply_chat_template ids = @huggingface/jinja's = Whetstone's template", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-chat-export-" });
  try {
    await writeCaseFolders(tmp);
    assert.deepEqual(golden.cases.map((c) => c.name), CASES.map((c) => c.name));
    for (const g of golden.cases) {
      const spec = CASES.find((c) => c.name === g.name)!;
      const dir = `${tmp}/${g.name}`;
      const written = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`)).chat_template;
      assert.equal(written, g.chat_template, `${g.name}: the Jinja the goldens were made from`);
      assert.equal(await Deno.readTextFile(`${dir}/Modelfile`), g.modelfile, `${g.name}: Modelfile`);
      const exported = await loadTokenizer(dir);
      const tpl = getTemplate(await loadTokenizer(spec.tokenizer), { template: spec.template });
      // The fixed tokenizer's special tokens, as LF saves them (llama3: eos <|end_of_text|> → <|eot_id|>, pad = eos).
      assert.deepEqual([exported.specialTokens.eos?.id, exported.specialTokens.pad?.id], [tpl.eosId, tpl.padId]);
      assert.equal(jinjaChatTemplate(tpl), g.chat_template);
      for (const conv of g.conversations) {
        const what = `${g.name} ${JSON.stringify(conv.messages)}`;
        assert.equal(exported.applyChatTemplate(conv.messages), conv.text, what);
        assert.deepEqual(exported.applyChatTemplate(conv.messages, { tokenize: true }), conv.ids, what);
        const system = conv.messages[0].role === "system" ? conv.messages[0].content : undefined;
        const turns = system === undefined ? conv.messages : conv.messages.slice(1);
        assert.deepEqual(tpl.encodeMessages(turns, system).flat(), conv.ids, `${what}: Whetstone's template`);
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("export chat template: no template keeps the tokenizer's own; a folder without a tokenizer gets nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-chat-export-" });
  try {
    const src = CASES.find((c) => c.name === "qwen")!.tokenizer;
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${src}/${f}`, `${tmp}/${f}`);
    const before = JSON.parse(await Deno.readTextFile(`${tmp}/tokenizer_config.json`)).chat_template;
    assert.deepEqual(await writeTemplateFiles(tmp), { chatTemplate: false, modelfile: true });
    assert.equal(JSON.parse(await Deno.readTextFile(`${tmp}/tokenizer_config.json`)).chat_template, before);
    assert.match(await Deno.readTextFile(`${tmp}/Modelfile`), /^# ollama modelfile[\s\S]*\nFROM \.\n/);
    await Deno.remove(`${tmp}/tokenizer.json`);
    assert.deepEqual(await writeTemplateFiles(tmp, "qwen"), { chatTemplate: false, modelfile: false });
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
