/**
 * The Chat tab: talk to the current session's model, or to a model (with an adapter) loaded by POST /chat/models;
 * a system prompt, sampling settings and tools (JSON); the answer streamed from POST /v1/chat/completions (fetch
 * streaming; with tools the answer comes whole, as the server cannot stream tool calls), and Stop aborts it.
 * @module
 */
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ErrorLine, useAction } from "./action.js";
import { call, errorOf, get, post } from "./api.js";
import { Label } from "./fields.js";
import { form } from "./form.js";
import { t } from "./i18n.js";
import { live } from "./live.js";
import { readSse } from "./sse.js";
import { useStore } from "./store.js";

/**
 * @typedef {{ role: string, content: string, tool_calls?: any[] }} Message
 */

/** The tools textarea's JSON as a list (undefined when empty). @param {string} text */
function parseTools(text) {
  if (!text.trim()) return undefined;
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`tools: ${/** @type {Error} */ (e).message}`);
  }
  if (!Array.isArray(v)) throw new Error("tools: expected a JSON list of tool definitions");
  return v.map((x) => (x && typeof x === "object" && !("function" in x) ? { type: "function", function: x } : x));
}

/** The tab. */
export function ChatTab() {
  const s = useStore(live);
  const { values } = useStore(form);
  const [act, run] = useAction();
  const [loaded, setLoaded] = useState(/** @type {string[]} */ ([]));
  const [model, setModel] = useState("");
  const [system, setSystem] = useState("");
  const [tools, setTools] = useState("");
  const [input, setInput] = useState("");
  const [opts, setOpts] = useState({ temperature: "0.95", top_p: "0.7", max_new_tokens: "1024" });
  const [doSample, setDoSample] = useState(true);
  const [messages, setMessages] = useState(/** @type {Message[]} */ ([]));
  const abort = useRef(/** @type {AbortController | null} */ (null));
  const [served, setServed] = useState(/** @type {string[]} */ ([]));
  useEffect(() => {
    // The models the server serves (its --model, the loaded chat models, the sessions): GET /v1/models.
    get("/v1/models").then((r) => setServed(r.data.map((/** @type {{ id: string }} */ m) => m.id))).catch(() => {});
  }, [loaded.length, s.id]);
  const models = [...new Set([...(s.id ? [s.id] : []), ...loaded, ...served])];
  const chosen = models.includes(model) ? model : models[0] ?? "";

  const load = async () => {
    const path = String(values.model_name_or_path).trim();
    if (!path) throw new Error(t("chat.no_model"));
    /** @type {Record<string, unknown>} */
    const body = { model_name_or_path: path };
    if (values.adapter_name_or_path) body.adapter_name_or_path = values.adapter_name_or_path;
    if (values.template) body.template = values.template;
    const res = await post("/chat/models", body);
    setLoaded([...loaded.filter((x) => x !== res.id), res.id]);
    setModel(res.id);
  };

  const send = async () => {
    if (!chosen) throw new Error(t("chat.no_model"));
    const text = input.trim();
    if (!text) return;
    const toolList = parseTools(tools);
    /** @type {Message[]} */
    const history = [...messages, { role: "user", content: text }];
    setMessages([...history, { role: "assistant", content: "" }]);
    setInput("");
    const ac = new AbortController();
    abort.current = ac;
    /** @type {Record<string, unknown>} */
    const body = {
      model: chosen,
      messages: [...(system.trim() ? [{ role: "system", content: system }] : []), ...history],
      stream: !toolList,
      do_sample: doSample,
    };
    if (toolList) body.tools = toolList;
    if (opts.temperature.trim()) body.temperature = Number(opts.temperature);
    if (opts.top_p.trim()) body.top_p = Number(opts.top_p);
    if (opts.max_new_tokens.trim()) body.max_tokens = Number(opts.max_new_tokens);
    const put = (/** @type {Message} */ m) => setMessages([...history, m]);
    try {
      const res = await call("/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: ac.signal,
      });
      if (!res.ok) throw await errorOf(res);
      if (toolList) {
        const m = (await res.json()).choices[0].message;
        put({ role: "assistant", content: m.content ?? "", tool_calls: m.tool_calls });
        return;
      }
      let answer = "";
      for await (const ev of readSse(res)) {
        if (ev.data === "[DONE]") break;
        const chunk = JSON.parse(ev.data);
        if (chunk.error) throw new Error(chunk.error.message ?? chunk.error);
        answer += chunk.choices?.[0]?.delta?.content ?? "";
        put({ role: "assistant", content: answer });
      }
    } catch (e) {
      if (!ac.signal.aborted) throw e;
    } finally {
      abort.current = null;
    }
  };

  const field = (/** @type {keyof typeof opts} */ k, /** @type {string} */ i18n, step = "any") =>
    html`
      <div class="field">
        <${Label} for=${`chat-${k}`} i18n=${i18n} />
        <input id=${`chat-${k}`} name=${k} type="number" step=${step} value=${opts[k]}
          onInput=${(/** @type {any} */ e) => setOpts({ ...opts, [k]: e.currentTarget.value })} />
      </div>
    `;
  const sending = act.busy === "chat-send";
  return html`
    <div class="chat">
      <div class="grid">
          <div class="field wide">
            <${Label} for="chat-model" i18n="chat.model" />
            <select id="chat-model" name="model" value=${chosen} onChange=${(/** @type {any} */ e) =>
              setModel(e.currentTarget.value)}>
              ${models.map((m) =>
                html`<option value=${m} selected=${m === chosen}>${
                  m === s.id ? `${t("chat.session")} ${m}` : m
                }</option>`
              )}
            </select>
          </div>
          <div class="field">
            <span class="spacer"></span>
            <button type="button" data-action="chat-load" data-i18n="chat.load" disabled=${act.busy !== ""}
              aria-busy=${act.busy === "chat-load"} onClick=${() => run("chat-load", load)}>${t("chat.load")}</button>
          </div>
          ${field("temperature", "arg.temperature")} ${field("top_p", "arg.top_p")}
          ${field("max_new_tokens", "arg.max_new_tokens", "1")}
          <div class="field check">
            <input id="chat-do_sample" name="do_sample" type="checkbox" checked=${doSample}
              onChange=${(/** @type {any} */ e) => setDoSample(e.currentTarget.checked)} />
            <${Label} for="chat-do_sample" i18n="arg.do_sample" />
          </div>
        </div>
      <div class="two">
        <div class="field">
          <${Label} for="chat-system" i18n="chat.system" />
          <textarea id="chat-system" name="system" rows="3" value=${system}
            onInput=${(/** @type {any} */ e) => setSystem(e.currentTarget.value)}></textarea>
        </div>
        <div class="field">
          <${Label} for="chat-tools" i18n="chat.tools" />
          <textarea id="chat-tools" name="tools" rows="3"
            placeholder='[{"name": "...", "description": "...", "parameters": {}}]'
            value=${tools} onInput=${(/** @type {any} */ e) => setTools(e.currentTarget.value)}></textarea>
        </div>
      </div>
      <div data-chat-log class="chat-log" role="log" aria-live="polite">
          ${messages.map((m) =>
            html`<div class=${`msg ${m.role}`} data-role=${m.role}>
          <b>${m.role === "user" ? t("chat.you") : t("chat.assistant")}</b>
          <div class="content">${m.content}</div>
          ${
              m.tool_calls?.length
                ? html`<pre data-tool-calls>${
                  m.tool_calls.map((c) => `${c.function.name}(${c.function.arguments})`).join("\n")
                }</pre>`
                : ""
            }
        </div>`
          )}
        </div>
      <form class="chat-input" onSubmit=${(/** @type {Event} */ e) => {
        e.preventDefault();
        run("chat-send", send);
      }}>
        <${Label} for="chat-input" i18n="chat.input" />
        <textarea id="chat-input" name="message" rows="2" value=${input}
          onInput=${(/** @type {any} */ e) => setInput(e.currentTarget.value)}
          onKeyDown=${(/** @type {KeyboardEvent} */ e) => {
            if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              run("chat-send", send);
            }
          }}></textarea>
        <div class="buttons">
          <button type="submit" data-action="chat-send" data-i18n="chat.send" class="primary" disabled=${act.busy !==
            ""}
            aria-busy=${sending}>${t("chat.send")}</button>
          <button type="button" data-action="chat-stop" data-i18n="chat.stop" disabled=${!sending}
            onClick=${() => abort.current?.abort()}>${t("chat.stop")}</button>
          <button type="button" data-action="chat-clear" data-i18n="chat.clear" disabled=${sending}
            onClick=${() => setMessages([])}>${t("chat.clear")}</button>
        </div>
      </form>
      <${ErrorLine} error=${act.error} />
    </div>
  `;
}
