/**
 * The Board's files over HTTP: the page at `/`, its modules, styles, translations and vendored packages with their
 * content types, without the API key (the API still asks for it), nothing outside board/ and the vendored files,
 * and every import of every served module resolving (relative files that exist, bare names in the import map).
 */
import assert from "node:assert/strict";
import { startServer } from "./testing.ts";

const BOARD = new URL("../board/", import.meta.url);

/** The import map of board/index.html. */
async function importMap(): Promise<Record<string, string>> {
  const html = await Deno.readTextFile(new URL("index.html", BOARD));
  const m = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html);
  assert.ok(m, "index.html has an import map");
  return JSON.parse(m[1]).imports;
}

/** The specifiers a module imports (static `import … from "x"`, `export … from "x"`, `import "x"`). */
function importsOf(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:^|[;\s}])(?:import|export)\s*(?:[\w*{}\s,$]+from\s*)?["']([^"']+)["']/g)) {
    out.push(m[1]);
  }
  return out;
}

Deno.test("board: / and its files answer 200 with their content types, without the API key", async () => {
  const t = await startServer({ apiKey: "s3cret" });
  try {
    const want: [string, RegExp][] = [
      ["/", /^text\/html/],
      ["/board/app.js", /^text\/javascript/],
      ["/board/style.css", /^text\/css/],
      ["/board/i18n/zh.json", /^application\/json/],
      ["/board/keys.json", /^application\/json/],
      ["/board/vendor/uplot.css", /^text\/css/],
    ];
    for (const url of Object.values(await importMap())) want.push([url, /^text\/javascript/]);
    for (const [path, type] of want) {
      const res = await fetch(`${t.url}${path}`);
      const body = await res.text();
      assert.equal(res.status, 200, `${path}: ${body.slice(0, 200)}`);
      assert.match(res.headers.get("content-type") ?? "", type, path);
      assert.ok(body.length > 0, path);
    }
    const page = await (await fetch(`${t.url}/`)).text();
    assert.match(page, /<script type="module" src="\/board\/app.js">/);
    assert.equal((await t.call("GET", "/health")).status, 401, "the API still asks for the key");
    assert.equal((await t.call("POST", "/board/app.js")).status, 401, "only GETs are the board's");
  } finally {
    await t.close();
  }
});

Deno.test("board: nothing outside board/ and the vendored files, no tests or TypeScript", async () => {
  const t = await startServer();
  try {
    for (
      const path of [
        "/board/i18n_test.ts",
        "/board/..%2Fdeno.json",
        "/board/%2e%2e/deno.json",
        "/board/vendor/preact/package.json",
        "/board/vendor/nope.js",
        "/board/vendor/yaml/../../package.json",
        "/board/.hidden.js",
      ]
    ) {
      const res = await fetch(`${t.url}${path}`);
      await res.body?.cancel();
      assert.equal(res.status, 404, path);
    }
  } finally {
    await t.close();
  }
});

Deno.test("board: keys.json is the key table (LF's defaults, enum choices Whetstone has)", async () => {
  const t = await startServer();
  try {
    const keys = await (await fetch(`${t.url}/board/keys.json`)).json();
    assert.deepEqual(keys.learning_rate, { def: 5e-5, kind: "num" });
    assert.deepEqual(keys.stage.choices, ["pt", "sft", "rm", "ppo", "dpo", "kto"]);
    assert.deepEqual(keys.finetuning_type.choices, ["lora", "oft", "freeze", "full"]);
    assert.equal(keys.cutoff_len.def, 2048);
    assert.ok(!("num_beams" in keys), "unsupported keys are not the form's");
  } finally {
    await t.close();
  }
});

Deno.test("board: every import of every served module resolves (relative files exist, bare names are mapped)", async () => {
  const t = await startServer();
  try {
    const map = await importMap();
    const seen = new Set<string>();
    const queue = ["/board/app.js", ...Object.values(map)];
    while (queue.length) {
      const url = queue.shift()!;
      if (seen.has(url)) continue;
      seen.add(url);
      const res = await fetch(`${t.url}${url}`);
      const src = await res.text();
      assert.equal(res.status, 200, `${url} (imported) answers ${res.status}`);
      for (const spec of importsOf(src)) {
        if (spec.startsWith(".") || spec.startsWith("/")) queue.push(new URL(spec, `http://x${url}`).pathname);
        else {
          assert.ok(spec in map, `${url} imports ${spec}, which the import map lacks`);
          queue.push(map[spec]);
        }
      }
    }
    assert.ok(seen.size > 20, `${seen.size} modules`);
  } finally {
    await t.close();
  }
});
