/**
 * The dialog asking for the server's API key (WHETSTONE_API_KEY), shown when the API answers 401.
 * @module
 */
import { t } from "./i18n.js";

/** @type {Promise<string | null> | undefined} */
let pending;

/**
 * Asks for the key; null when the dialog is dismissed. Concurrent callers share one dialog.
 * @param {boolean} wrong whether a kept key was refused
 * @returns {Promise<string | null>}
 */
export function askKey(wrong) {
  return pending ??= new Promise((resolve) => {
    const dialog = document.createElement("dialog");
    dialog.setAttribute("data-key-dialog", "");
    dialog.setAttribute("aria-labelledby", "key-title");
    const form = document.createElement("form");
    form.method = "dialog";
    const title = document.createElement("h2");
    title.id = "key-title";
    title.dataset.i18n = "key.title";
    title.textContent = t("key.title");
    const note = document.createElement("p");
    note.dataset.i18n = wrong ? "key.wrong" : "key.note";
    note.textContent = t(wrong ? "key.wrong" : "key.note");
    const label = document.createElement("label");
    label.htmlFor = "api-key";
    label.dataset.i18n = "key.label";
    label.textContent = t("key.label");
    const input = document.createElement("input");
    input.id = "api-key";
    input.name = "api_key";
    input.type = "password";
    input.autocomplete = "current-password";
    input.required = true;
    const ok = document.createElement("button");
    ok.type = "submit";
    ok.value = "ok";
    ok.dataset.action = "save-key";
    ok.dataset.i18n = "key.save";
    ok.textContent = t("key.save");
    form.append(title, note, label, input, ok);
    dialog.append(form);
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const value = dialog.returnValue === "ok" ? input.value.trim() : "";
      dialog.remove();
      pending = undefined;
      resolve(value || null);
    });
    dialog.showModal();
    input.focus();
  });
}
