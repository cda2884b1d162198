/**
 * Form controls bound to the training form (form.js): each has `name` = the YAML key it sets, an id, and a
 * `<label for>` whose text is translated (`arg.<key>` unless given).
 * @module
 */
import { html } from "htm/preact";
import { form, setValues } from "./form.js";
import { t } from "./i18n.js";
import { useStore } from "./store.js";

/**
 * A translated label.
 * @param {{ for: string, i18n: string }} p
 */
export function Label(p) {
  return html`<label for=${p.for} data-i18n=${p.i18n}>${t(p.i18n)}</label>`;
}

/**
 * A text or number field (kept as typed; form.js converts it).
 * @param {{ name: string, i18n: string, type?: string, step?: string, min?: string, placeholder?: string, list?: string }} p
 */
export function Input(p) {
  const { values } = useStore(form);
  const id = `f-${p.name}`;
  return html`
    <div class="field">
      <${Label} for=${id} i18n=${p.i18n} />
      <input id=${id} name=${p.name} type=${p.type ?? "text"} step=${p.step} min=${p.min} list=${p.list}
        placeholder=${p.placeholder} value=${values[p.name]}
        onInput=${(/** @type {any} */ e) => setValues({ [p.name]: e.currentTarget.value })} />
    </div>
  `;
}

/**
 * A number field.
 * @param {{ name: string, i18n: string, step?: string, min?: string, placeholder?: string }} p
 */
export function Num(p) {
  return html`<${Input} ...${p} type="number" step=${p.step ?? "any"} />`;
}

/**
 * A checkbox.
 * @param {{ name: string, i18n: string }} p
 */
export function Check(p) {
  const { values } = useStore(form);
  const id = `f-${p.name}`;
  return html`
    <div class="field check">
      <input id=${id} name=${p.name} type="checkbox" checked=${values[p.name] === true}
        onChange=${(/** @type {any} */ e) => setValues({ [p.name]: e.currentTarget.checked })} />
      <${Label} for=${id} i18n=${p.i18n} />
    </div>
  `;
}

/**
 * A select of the key's choices (from the key table unless given); `labels` translates choices.
 * @param {{ name: string, i18n: string, choices?: string[], labels?: Record<string, string>, onPick?: (v: string) => void }} p
 */
export function Select(p) {
  const { values, keys } = useStore(form);
  const id = `f-${p.name}`;
  const value = String(values[p.name] ?? "");
  const choices = [...(p.choices ?? keys[p.name]?.choices ?? [])];
  if (!choices.includes(value)) choices.push(value);
  return html`
    <div class="field">
      <${Label} for=${id} i18n=${p.i18n} />
      <select id=${id} name=${p.name} value=${value} onChange=${(/** @type {any} */ e) => {
        setValues({ [p.name]: e.currentTarget.value });
        p.onPick?.(e.currentTarget.value);
      }}>
          ${choices.map((c) => html`<option value=${c} selected=${c === value}>${p.labels?.[c] ?? c}</option>`)}
        </select>
    </div>
  `;
}

/**
 * A collapsible group of fields (`<details>`), its summary translated.
 * @param {{ i18n: string, group: string, children?: any, open?: boolean }} p
 */
export function Group(p) {
  return html`
    <details class="group" data-group=${p.group} open=${p.open}>
      <summary data-i18n=${p.i18n}>${t(p.i18n)}</summary>
      <div class="grid">${p.children}</div>
    </details>
  `;
}
