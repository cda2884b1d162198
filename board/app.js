/**
 * The Whetstone Board: the top bar and the tabs (Train, Evaluate & Predict, Chat, Export, Runs). Boots the page:
 * the language, the key table, what the server offers, and the session kept from the last visit.
 * @module
 */
import { html, render } from "htm/preact";
import { useState } from "preact/hooks";
import { loadCatalog } from "./catalog.js";
import { ChatTab } from "./chat.js";
import { EvaluateTab } from "./evaluate.js";
import { ExportTab } from "./export.js";
import { form } from "./form.js";
import { i18n, initialLang, setLang, t } from "./i18n.js";
import { closeSession, keptSession } from "./live.js";
import { openRun, RunsTab } from "./runs.js";
import { useStore } from "./store.js";
import { TopBar } from "./topbar.js";
import { TrainTab } from "./train.js";

const TAB_KEY = "whetstone.tab";
const TABS = ["train", "evaluate", "chat", "export", "runs"];

/** The page. */
function App() {
  useStore(i18n);
  const [tab, setTabState] = useState(() => {
    const kept = localStorage.getItem(TAB_KEY);
    return kept && TABS.includes(kept) ? kept : "train";
  });
  const setTab = (/** @type {string} */ name) => {
    localStorage.setItem(TAB_KEY, name);
    setTabState(name);
  };
  const names = {
    train: t("tab.train"),
    evaluate: t("tab.evaluate"),
    chat: t("tab.chat"),
    export: t("tab.export"),
    runs: t("tab.runs"),
  };
  const i18nKeys = {
    train: "tab.train",
    evaluate: "tab.evaluate",
    chat: "tab.chat",
    export: "tab.export",
    runs: "tab.runs",
  };
  /** Arrow keys move between tabs (the selected tab is the one in the tab order). @param {KeyboardEvent} e */
  const onKey = (e) => {
    const i = TABS.indexOf(tab);
    const next = e.key === "ArrowRight"
      ? (i + 1) % TABS.length
      : e.key === "ArrowLeft"
      ? (i + TABS.length - 1) % TABS.length
      : e.key === "Home"
      ? 0
      : e.key === "End"
      ? TABS.length - 1
      : -1;
    if (next < 0) return;
    e.preventDefault();
    setTab(TABS[next]);
    /** @type {HTMLElement | null} */ (document.getElementById(`tab-${TABS[next]}`))?.focus();
  };
  const panels = {
    train: html`<${TrainTab} />`,
    evaluate: html`<${EvaluateTab} />`,
    chat: html`<${ChatTab} />`,
    export: html`<${ExportTab} />`,
    runs: html`<${RunsTab} onOpen=${() => setTab("train")} />`,
  };
  return html`
    <${TopBar} />
    <nav class="tabs" role="tablist" aria-label=${t("app.tabs")} onKeyDown=${onKey}>
      ${TABS.map((name) =>
        html`
          <button type="button" role="tab" id=${`tab-${name}`} data-tab=${name} aria-selected=${String(tab === name)}
            aria-controls=${`panel-${name}`} tabindex=${tab === name ? 0 : -1} data-i18n=${i18nKeys[name]}
            onClick=${() => setTab(name)}>${names[name]}</button>
        `
      )}
    </nav>
    ${TABS.map((name) =>
      html`
        <section role="tabpanel" id=${`panel-${name}`} data-panel=${name} aria-labelledby=${`tab-${name}`}
          hidden=${tab !== name} tabindex="0">${panels[name]}</section>
      `
    )}
  `;
}

/** Boots the page. */
async function main() {
  await setLang(initialLang());
  const root = /** @type {HTMLElement} */ (document.getElementById("app"));
  try {
    const res = await fetch("/board/keys.json");
    form.set({ keys: await res.json() });
  } catch (e) {
    console.error("keys.json", e);
  }
  render(html`<${App} />`, root);
  await loadCatalog();
  const kept = keptSession();
  if (kept) {
    try {
      await openRun(kept);
    } catch (e) {
      console.warn(`session ${kept}: ${/** @type {Error} */ (e).message}`);
      closeSession();
    }
  }
  document.body.dataset.ready = "true";
}

main();
