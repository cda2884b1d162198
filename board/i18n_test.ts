/**
 * The Board's translations: every key the page's modules use (`t("…")`, `i18n="…"`, `data-i18n="…"`, key maps)
 * is in every language file, and every language file has exactly the keys of the others, none empty, with the same
 * `{placeholders}`.
 */
import assert from "node:assert/strict";

const DIR = new URL("./", import.meta.url);
const LANGS = ["en", "ru", "zh", "ja", "ko"];

async function readLang(lang: string): Promise<Record<string, string>> {
  return JSON.parse(await Deno.readTextFile(new URL(`i18n/${lang}.json`, DIR)));
}

/** The board's modules, by name. */
async function modules(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(DIR)) {
    if (e.isFile && e.name.endsWith(".js")) out.set(e.name, await Deno.readTextFile(new URL(e.name, DIR)));
  }
  return out;
}

/** Key-like string literals ("ns.key") whose namespace is one of the language files'. */
function usedKeys(source: string, namespaces: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const m of source.matchAll(/["'`]([a-z]+)\.([a-z0-9_]+)["'`]/g)) {
    if (namespaces.has(m[1])) out.add(`${m[1]}.${m[2]}`);
  }
  return out;
}

Deno.test("board i18n: every language file has the same keys, none empty, the same placeholders", async () => {
  const en = await readLang("en");
  const placeholders = (s: string) => [...s.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort().join(",");
  for (const lang of LANGS) {
    const d = await readLang(lang);
    const missing = Object.keys(en).filter((k) => !(k in d));
    const extra = Object.keys(d).filter((k) => !(k in en));
    assert.deepEqual(missing, [], `${lang}.json lacks ${missing.join(", ")}`);
    assert.deepEqual(extra, [], `${lang}.json has keys en.json lacks: ${extra.join(", ")}`);
    for (const [k, v] of Object.entries(d)) {
      assert.ok(typeof v === "string" && v.trim() !== "", `${lang}.json ${k} is empty`);
      assert.equal(placeholders(v), placeholders(en[k]), `${lang}.json ${k}: placeholders differ from en`);
    }
  }
});

Deno.test("board i18n: every key the modules use is translated, and every translated key is used", async () => {
  const en = await readLang("en");
  const namespaces = new Set(Object.keys(en).map((k) => k.split(".")[0]));
  const used = new Set<string>();
  for (const [name, src] of await modules()) {
    for (const k of usedKeys(src, namespaces)) {
      assert.ok(k in en, `${name} uses ${k}, which en.json lacks`);
      used.add(k);
    }
    // Every t("…") and data-i18n="…" literal, whatever its namespace.
    for (const m of src.matchAll(/\bt\(\s*"([^"]+)"|data-i18n="([^"$]+)"|\bi18n="([^"$]+)"/g)) {
      const k = m[1] ?? m[2] ?? m[3];
      assert.ok(k in en, `${name} uses ${k}, which en.json lacks`);
    }
  }
  const unused = Object.keys(en).filter((k) => !used.has(k));
  assert.deepEqual(unused, [], `keys no module uses (or uses only through a computed name): ${unused.join(", ")}`);
});

Deno.test("board i18n: the translations differ from English (ru, zh, ja, ko are real translations)", async () => {
  const en = await readLang("en");
  for (const lang of LANGS.slice(1)) {
    const d = await readLang(lang);
    const same = Object.keys(en).filter((k) => d[k] === en[k]).length;
    assert.ok(same / Object.keys(en).length < 0.25, `${lang}.json: ${same} strings are the English ones`);
  }
});
