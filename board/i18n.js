/**
 * Translations: the language's strings (board/i18n/<lang>.json), `t(key)` for a string, the language kept in
 * localStorage and set on `<html lang>`. Every string the page shows has a key in each language file
 * (board/i18n_test.ts checks it).
 * @module
 */
import { createStore } from "./store.js";

/** The languages of the Board, as LlamaBoard offers them. */
export const LANGS = ["en", "ru", "zh", "ja", "ko"];

/** Each language's name in itself. */
export const LANG_NAMES = { en: "English", ru: "Русский", zh: "简体中文", ja: "日本語", ko: "한국어" };

const KEY = "whetstone.lang";

/** The language and its strings. */
export const i18n = createStore({ lang: "en", /** @type {Record<string, string>} */ dict: {} });

/**
 * The language kept, or the browser's when it is one of {@link LANGS}, or English.
 * @returns {string}
 */
export function initialLang() {
  const kept = localStorage.getItem(KEY);
  if (kept && LANGS.includes(kept)) return kept;
  const nav = (navigator.language || "en").slice(0, 2).toLowerCase();
  return LANGS.includes(nav) ? nav : "en";
}

/**
 * Loads and switches to `lang` (kept for the next visit).
 * @param {string} lang
 */
export async function setLang(lang) {
  if (!LANGS.includes(lang)) throw new Error(`lang: expected one of ${LANGS.join(", ")}, got ${lang}`);
  const res = await fetch(`/board/i18n/${lang}.json`);
  if (!res.ok) throw new Error(`cannot load the ${lang} strings: ${res.status}`);
  const dict = await res.json();
  localStorage.setItem(KEY, lang);
  document.documentElement.lang = lang;
  i18n.set({ lang, dict });
  document.title = dict["app.title"] ?? document.title;
}

/**
 * The string `key` in the current language, `{name}` placeholders filled from `vars`.
 * @param {string} key
 * @param {Record<string, string | number>} [vars]
 * @returns {string}
 */
export function t(key, vars) {
  const s = i18n.get().dict[key] ?? key;
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}
