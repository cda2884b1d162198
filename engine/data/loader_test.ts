import assert from "node:assert/strict";
import type { AlignedExample } from "./aligned.ts";
import { readDatasetInfo } from "./dataset_info.ts";
import { DataError } from "./files.ts";
import type { Stage } from "./formats.ts";
import { loadDatasets, type LoadDatasetsArgs } from "./loader.ts";

const SHARED = new URL("../../../shared/llamafactory-data/", import.meta.url).pathname;
const HAVE_SHARED = await Deno.stat(SHARED).then(() => true, () => false);
if (!HAVE_SHARED) console.warn(`skipping the demo-data tests: ${SHARED} not found (../shared is absent)`);
const demo = { ignore: !HAVE_SHARED };

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_loader_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function load(dataset: string, stage: Stage, more: Partial<LoadDatasetsArgs> & { streaming?: false } = {}) {
  return loadDatasets({ dataset, dataset_dir: SHARED, stage, ...more, streaming: false });
}

function stream(dataset: string, stage: Stage, more: Partial<LoadDatasetsArgs> = {}) {
  return loadDatasets({ dataset, dataset_dir: SHARED, stage, ...more, streaming: true });
}

async function rejectsData(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DataError, `expected a DataError, got ${e}`);
    for (const s of parts) {
      const ok: boolean = typeof s === "string" ? e.message.includes(s) : s.test(e.message);
      assert.ok(ok, `message ${JSON.stringify(e.message)} lacks ${s}`);
    }
    return e.message;
  }
  assert.fail("expected an error");
}

Deno.test({
  ...demo,
  name: "demo alpaca datasets: counts and contents (needs ../shared)",
  async fn() {
    const en = await load("alpaca_en_demo", "sft");
    assert.equal(en.train.length, 999);
    assert.deepEqual(en.warnings, []);
    assert.deepEqual(en.train[0].prompt, [{ role: "user", content: "Describe a process of making crepes." }]);
    assert.match(en.train[0].response[0].content, /^Making crepes is an easy and delicious process!/);
    // row 6 has an input: instruction + "\n" + input
    assert.equal(
      en.train[5].prompt[0].content,
      "Given the parameters of a triangle, find out its perimeter.\nSide 1 = 4\nSide 2 = 6\nSide 3 = 8",
    );
    assert.deepEqual(en.train[5].source, { dataset: "alpaca_en_demo", file: `${SHARED}alpaca_en_demo.json`, row: 6 });
    assert.equal((await load("alpaca_zh_demo", "sft")).train.length, 1000);
    const id = await load("identity", "sft");
    assert.equal(id.train.length, 91);
    assert.equal(id.train[0].prompt[0].content, "hi");
    assert.equal(
      id.train[0].response[0].content,
      "Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I assist you today?",
    );
    assert.deepEqual([id.train[0].system, id.train[0].tools], ["", ""]);
  },
});

Deno.test({
  ...demo,
  name: "demo tool-call, preference and kto datasets (needs ../shared)",
  async fn() {
    for (const name of ["glaive_toolcall_en_demo", "glaive_toolcall_zh_demo"]) {
      const g = await load(name, "sft");
      assert.equal(g.train.length, 300);
      assert.deepEqual(g.warnings, []);
      for (const e of g.train) {
        assert.equal(e.prompt.length % 2, 1);
        assert.ok(Array.isArray(JSON.parse(e.tools)));
      }
    }
    const g = (await load("glaive_toolcall_en_demo", "sft")).train[0];
    assert.deepEqual(g.prompt.map((m) => m.role), [
      "user",
      "assistant",
      "user",
      "function",
      "observation",
      "assistant",
      "user",
    ]);
    assert.equal(JSON.parse(g.tools)[0].name, "search_recipes");
    assert.equal(JSON.parse(g.prompt[3].content).name, "search_recipes");

    const dpo = await load("dpo_en_demo", "dpo");
    assert.equal(dpo.train.length, 300);
    assert.equal((await load("dpo_zh_demo", "rm")).train.length, 300);
    const [r0, r1, , , r4, r5] = dpo.train;
    assert.equal(r0.system, "");
    assert.match(r1.system, /^You are a teacher\. Given a task/);
    assert.match(r5.system, /\S/);
    assert.equal(r4.prompt.length, 5);
    for (const e of dpo.train) assert.deepEqual(e.response.map((m) => m.role), ["assistant", "assistant"]);
    assert.match(r0.response[0].content, /^That sounds like a fun and engaging idea!/);

    const kto = await load("kto_en_demo", "kto");
    assert.equal(kto.train.length, 300);
    assert.deepEqual(kto.train.slice(0, 8).map((e) => e.ktoTag), [true, true, true, true, false, false, true, false]);
    assert.equal(kto.train.filter((e) => e.ktoTag).length, 150);
    for (const e of kto.train) assert.equal(e.response.length, 1);
  },
});

Deno.test({
  ...demo,
  name: "demo pre-training text: c4_demo (jsonl) and wiki_demo (txt), also streamed (needs ../shared)",
  async fn() {
    const c4 = await load("c4_demo", "pt");
    assert.equal(c4.train.length, 300);
    assert.deepEqual(c4.train[0].response, []);
    assert.match(c4.train[0].prompt[0].content, /^Don’t think you need all the bells and whistles\?/);
    const wiki = await load("wiki_demo", "pt");
    assert.equal(wiki.train.length, 30);
    assert.match(wiki.train[0].prompt[0].content, /^Anarchism is a political philosophy/);
    const s = await stream("c4_demo,wiki_demo", "pt");
    const streamed: AlignedExample[] = [];
    for await (const e of s.train) streamed.push(e);
    assert.deepEqual(streamed, [...c4.train, ...wiki.train]);
    assert.match(s.warnings[0], /will not be mixed in streaming mode/);
    // streaming val_size: the first N examples evaluate; the stream can be read again
    const v = await stream("c4_demo", "pt", { val_size: 10, max_samples: 50 });
    assert.deepEqual(v.eval, c4.train.slice(0, 10));
    for (let pass = 0; pass < 2; pass++) {
      const rest: AlignedExample[] = [];
      for await (const e of v.train) rest.push(e);
      assert.deepEqual(rest, c4.train.slice(10, 50));
    }
  },
});

Deno.test({
  ...demo,
  name: "max_samples per dataset, val_size, eval_dataset and interleaving on demo data (needs ../shared)",
  async fn() {
    const two = await load("identity,alpaca_en_demo", "sft", { max_samples: 8 });
    assert.equal(two.train.length, 16);
    assert.deepEqual(two.stats, [{ name: "identity", rows: 8, kept: 8 }, { name: "alpaca_en_demo", rows: 8, kept: 8 }]);
    const split = await load("alpaca_en_demo", "sft", { val_size: 0.1 });
    assert.equal(split.eval!.length, 100);
    assert.equal(split.train.length, 899);
    const rows = (x: AlignedExample[]) => x.map((e) => e.source.row);
    assert.deepEqual(
      [...rows(split.train), ...rows(split.eval!)].sort((a, b) => a - b),
      Array.from({ length: 999 }, (_, i) => i + 1),
    );
    assert.deepEqual(rows((await load("alpaca_en_demo", "sft", { val_size: 0.1 })).eval!), rows(split.eval!));
    assert.notDeepEqual(
      rows((await load("alpaca_en_demo", "sft", { val_size: 0.1, seed: 7 })).eval!),
      rows(split.eval!),
    );
    assert.equal((await load("identity", "sft", { val_size: 5 })).eval!.length, 5);
    const ev = await load("identity", "sft", { eval_dataset: "alpaca_en_demo", max_samples: 20 });
    assert.deepEqual([ev.train.length, ev.eval!.length], [20, 20]);
    await rejectsData(
      load("identity", "sft", { eval_dataset: "alpaca_en_demo", val_size: 0.1 }),
      "Cannot specify `val_size`",
    );
    const under = await load("identity,alpaca_en_demo", "sft", { mix_strategy: "interleave_under" });
    assert.equal(under.train.length, 2 * 91);
    assert.deepEqual(under.train.slice(0, 4).map((e) => e.source.dataset), [
      "identity",
      "alpaca_en_demo",
      "identity",
      "alpaca_en_demo",
    ]);
    const over = await load("identity,alpaca_en_demo", "sft", { mix_strategy: "interleave_over" });
    assert.equal(over.train.length, 2 * 999);
    const probs = await load("identity,alpaca_en_demo", "sft", {
      mix_strategy: "interleave_under",
      interleave_probs: "0.5,0.5",
      seed: 1,
    });
    assert.equal(probs.train.filter((e) => e.source.dataset === "identity").length, 91);
  },
});

Deno.test({
  ...demo,
  name: "every dataset_info.json entry that is not a local text file gives a clear error (needs ../shared)",
  async fn() {
    // hub entries go to a loopback hub that has nothing: never a non-loopback address
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response("{}", { status: 404 }),
    );
    const hub = {
      endpoint: `http://127.0.0.1:${server.addr.port}`,
      cacheDir: await Deno.makeTempDir(),
      progressLine: false,
    };
    try {
      const info = await readDatasetInfo(SHARED);
      const seen: Record<string, number> = {};
      for (const [name, entry] of Object.entries(info) as [string, Record<string, unknown>][]) {
        const stage: Stage = entry.ranking ? "dpo" : "sft";
        try {
          const r = await loadDatasets({ dataset: name, dataset_dir: SHARED, stage, hub, max_samples: 2 });
          assert.ok(entry.file_name && r.train.length > 0, name);
          seen.ok = (seen.ok ?? 0) + 1;
        } catch (e) {
          assert.ok(e instanceof DataError, `${name}: ${e}`);
          assert.ok(e.message.includes(`"${name}"`), `${name}: the message names the dataset: ${e.message}`);
          const kind = /multimodal/.test(e.message)
            ? "multimodal"
            : /hf_hub_url .*HTTP 404/.test(e.message)
            ? "hub"
            : /ModelScope/.test(e.message)
            ? "ms"
            : /no response column/.test(e.message)
            ? "pt-only"
            : /kto_tag|preference/.test(e.message)
            ? "stage"
            : e.message;
          seen[kind] = (seen[kind] ?? 0) + 1;
        }
      }
      // 7 local text datasets load for sft/dpo (c4_demo and wiki_demo are pt-only, kto_en_demo kto-only); dataset
      // checks come before any download: 13 multimodal, 17 pt-only (15 on the hub), 2 hub preference sets without
      // chosen/rejected columns; the other 63 hub datasets reach the (empty) hub; 1 is on ModelScope only
      assert.deepEqual(seen, { ok: 7, "pt-only": 17, multimodal: 13, stage: 3, hub: 63, ms: 1 });
    } finally {
      await server.shutdown();
      await Deno.remove(hub.cacheDir, { recursive: true });
    }
  },
});

Deno.test({
  ...demo,
  name: "stage mismatches and unregistered demo files are explained (needs ../shared)",
  async fn() {
    await rejectsData(
      load("dpo_en_demo", "sft"),
      'dataset "dpo_en_demo" cannot be used for stage sft',
      "only stages rm and dpo",
    );
    await rejectsData(load("alpaca_en_demo", "dpo"), "needs a preference dataset");
    await rejectsData(load("alpaca_en_demo", "kto"), "needs a kto_tag column");
    await rejectsData(load("c4_demo", "sft"), "no response column");
    await rejectsData(
      load("kto_en_demo", "sft"),
      "Cannot find valid samples",
      "dropped 300 of 300 rows: a KTO example",
    );
    await rejectsData(load("alpaca_en_dem", "sft"), "close names: alpaca_en_demo");
    // reason_tool_use_demo_50 is not in dataset_info.json (LF v1 format); as openai-style sharegpt its content is a list
    const info = {
      reason: {
        file_name: `${SHARED}reason_tool_use_demo_50.jsonl`,
        formatting: "sharegpt",
        columns: { messages: "messages", tools: "tools" },
        tags: {
          role_tag: "role",
          content_tag: "content",
          user_tag: "user",
          assistant_tag: "assistant",
          system_tag: "system",
        },
      },
    };
    await rejectsData(
      loadDatasets({ dataset: "reason", dataset_info: info, stage: "sft" }),
      `${SHARED}reason_tool_use_demo_50.jsonl:1 (dataset "reason"): messages[0].content should be a string, got array`,
    );
  },
});

Deno.test("malformed files: errors name the file, the row or line, and the field", async () => {
  await withDir(async (dir) => {
    const rows = Array.from({ length: 20 }, (_, i) => ({ instruction: `q${i}`, input: "", output: `a${i}` }));
    const info: Record<string, unknown> = {
      missing: { file_name: "missing.json" },
      wrongtype: { file_name: "wrongtype.json" },
      badline: { file_name: "bad.jsonl" },
      nofile: { file_name: "nofile.json" },
      csv: { file_name: "x.csv", columns: { prompt: "q", response: "a", kto_tag: "ok" } },
      folder: { file_name: "parts" },
      broken: { file_name: "broken.json", formatting: "sharegpt" },
    };
    await Deno.writeTextFile(`${dir}/dataset_info.json`, JSON.stringify(info));
    const { instruction: _, ...row17 } = rows[16];
    await Deno.writeTextFile(`${dir}/missing.json`, JSON.stringify(rows.map((r, i) => i === 16 ? row17 : r), null, 1));
    await Deno.writeTextFile(
      `${dir}/wrongtype.json`,
      JSON.stringify(rows.map((r, i) => i === 4 ? { ...r, output: 42 } : r)),
    );
    await Deno.writeTextFile(
      `${dir}/bad.jsonl`,
      rows.slice(0, 3).map((r) => JSON.stringify(r)).join("\n") + '\n{"instruction": "x", \n',
    );
    await Deno.writeTextFile(`${dir}/x.csv`, "q,a,ok\nhello,world,true\nbye,now,false\n");
    await Deno.mkdir(`${dir}/parts`);
    await Deno.writeTextFile(`${dir}/parts/1.jsonl`, JSON.stringify(rows[0]) + "\n");
    await Deno.writeTextFile(`${dir}/parts/2.jsonl`, JSON.stringify(rows[1]) + "\n");
    const conv = (...turns: string[]) => ({
      conversations: turns.map((t, i) => ({ from: i % 2 ? "gpt" : "human", value: t })),
    });
    await Deno.writeTextFile(
      `${dir}/broken.json`,
      JSON.stringify([conv("a", "b"), conv("a"), conv("a", "b"), {
        conversations: [{ from: "gpt", value: "x" }, { from: "human", value: "y" }],
      }, conv("c")]),
    );
    const go = (dataset: string, stage: Stage = "sft") => loadDatasets({ dataset, dataset_dir: dir, stage });

    await rejectsData(
      go("missing"),
      `${dir}/missing.json row 17 (dataset "missing"): missing column "instruction" (columns.prompt)`,
    );
    await rejectsData(
      go("wrongtype"),
      `${dir}/wrongtype.json row 5 (dataset "wrongtype"): column "output" (columns.response) should be a string, got number`,
    );
    await rejectsData(go("badline"), `${dir}/bad.jsonl:4: invalid JSON`);
    await rejectsData(go("nofile"), `dataset "nofile": file or folder not found: ${dir}/nofile.json`);
    const csv = await go("csv", "kto");
    assert.deepEqual(csv.train.map((e) => [e.prompt[0].content, e.response[0].content, e.ktoTag]), [[
      "hello",
      "world",
      true,
    ], ["bye", "now", false]]);
    assert.deepEqual((await go("folder")).train.map((e) => [e.source.file.slice(dir.length), e.source.row]), [[
      "/parts/1.jsonl",
      1,
    ], ["/parts/2.jsonl", 1]]);
    const broken = await go("broken");
    assert.equal(broken.train.length, 2);
    assert.equal(broken.warnings.length, 2);
    assert.match(
      broken.warnings[0],
      new RegExp(
        `^dataset "broken": dropped 2 of 5 rows: invalid message count \\(${dir}/broken.json row 2, ${dir}/broken.json row 5\\); first: invalid message count: 1 messages`,
      ),
    );
    assert.match(broken.warnings[1], /dropped 1 of 5 rows: invalid role tag \(.*broken\.json row 4\)/);
    await rejectsData(
      loadDatasets({ dataset: "broken", dataset_dir: dir, stage: "sft", max_samples: 2 }).then(() => go("nothing")),
      'undefined dataset "nothing"',
    );
  });
});

Deno.test("argument checks", async () => {
  await rejectsData(loadDatasets({ dataset: "", stage: "sft" }), "no dataset given");
  await rejectsData(
    loadDatasets({ dataset: "x", stage: "ppo2" as Stage }),
    "stage should be one of pt, sft, rm, dpo, kto, ppo",
  );
  await rejectsData(loadDatasets({ dataset: "x", mix_strategy: "zip" as "concat" }), "mix_strategy should be one of");
  await rejectsData(
    loadDatasets({ dataset: "x", streaming: true, val_size: 0.1 }),
    "with streaming, val_size should be an integer",
  );
  await rejectsData(
    loadDatasets({ dataset: "x", dataset_dir: "/nonexistent" }),
    "cannot open /nonexistent/dataset_info.json",
  );
  await rejectsData(
    loadDatasets({ dataset: "x", dataset_dir: "REMOTE:org/data" }),
    "REMOTE dataset_info.json is not supported",
  );
});
