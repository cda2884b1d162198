import assert from "node:assert/strict";
import { parquetWriteBuffer } from "../../deps.ts";
import { DataError } from "./files.ts";
import { resolveHubDataset, splitOfPath } from "./hub_datasets.ts";
import { loadDatasets } from "./loader.ts";

/**
 * A loopback hub serving dataset repositories from `${root}/<org>/<name>/<revision with / as -->/...`: the tree API
 * (two entries a page, with `Link: rel="next"`) and `resolve` downloads.
 */
function startHub(root: string) {
  const seen: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    seen.push(url.pathname + url.search);
    const tree = /^\/api\/datasets\/([^/]+)\/([^/]+)\/tree\/([^/]+)$/.exec(url.pathname);
    if (tree) {
      const dir = `${root}/${tree[1]}/${tree[2]}/${decodeURIComponent(tree[3]).replaceAll("/", "--")}`;
      const entries: { type: string; path: string; size: number }[] = [];
      const walk = async (d: string, prefix: string) => {
        for await (const e of Deno.readDir(d)) {
          if (e.isDirectory) {
            entries.push({ type: "directory", path: prefix + e.name, size: 0 });
            await walk(`${d}/${e.name}`, `${prefix}${e.name}/`);
          } else entries.push({ type: "file", path: prefix + e.name, size: (await Deno.stat(`${d}/${e.name}`)).size });
        }
      };
      try {
        await walk(dir, "");
      } catch {
        return new Response("{}", { status: 404, headers: { "x-error-code": "RepoNotFound" } });
      }
      entries.sort((a, b) => a.path.localeCompare(b.path));
      const start = Number(url.searchParams.get("cursor") ?? 0);
      const headers = new Headers({ "content-type": "application/json" });
      if (start + 2 < entries.length) {
        const next = new URL(url);
        next.searchParams.set("cursor", String(start + 2));
        headers.set("link", `<${next.href}>; rel="next"`);
      }
      return new Response(JSON.stringify(entries.slice(start, start + 2)), { headers });
    }
    const res = /^\/datasets\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (res) {
      const path = `${root}/${res[1]}/${res[2]}/${decodeURIComponent(res[3]).replaceAll("/", "--")}/${
        decodeURIComponent(res[4])
      }`;
      try {
        return new Response(await Deno.readFile(path));
      } catch {
        return new Response("Entry not found", { status: 404, headers: { "x-error-code": "EntryNotFound" } });
      }
    }
    return new Response("bad path", { status: 400 });
  });
  return { seen, endpoint: `http://127.0.0.1:${server.addr.port}`, server };
}

async function write(path: string, data: string | Uint8Array) {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  if (typeof data === "string") await Deno.writeTextFile(path, data);
  else await Deno.writeFile(path, data);
}

function parquet(rows: { instruction: string; output: string }[]): Uint8Array {
  return new Uint8Array(parquetWriteBuffer({
    columnData: [
      { name: "instruction", data: rows.map((r) => r.instruction), type: "STRING" },
      { name: "output", data: rows.map((r) => r.output), type: "STRING" },
    ],
  }));
}

async function withHub(f: (hub: ReturnType<typeof startHub>, root: string, cache: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "whetstone_hubdata_" });
  const hub = startHub(`${root}/repos`);
  try {
    // org/alpaca: data/train-*.parquet and data/test-*.parquet, plus files that are not data
    const repo = `${root}/repos/org/alpaca/main`;
    await write(`${repo}/README.md`, "# alpaca");
    await write(`${repo}/.gitattributes`, "");
    await write(`${repo}/data/train-00000-of-00002.parquet`, parquet([{ instruction: "a", output: "A" }]));
    await write(`${repo}/data/train-00001-of-00002.parquet`, parquet([{ instruction: "b", output: "B" }]));
    await write(`${repo}/data/test-00000-of-00001.parquet`, parquet([{ instruction: "t", output: "T" }]));
    // org/plain: one jsonl with no split in its name, and a conversion with a subset
    await write(`${root}/repos/org/plain/main/all.jsonl`, '{"instruction": "x", "output": "X"}\n');
    await write(
      `${root}/repos/org/plain/refs--convert--parquet/en/train/0000.parquet`,
      parquet([{ instruction: "e", output: "E" }]),
    );
    // org/script: only a loading script; its conversion has the default config
    await write(`${root}/repos/org/script/main/script.py`, "");
    await write(
      `${root}/repos/org/script/refs--convert--parquet/default/train/0000.parquet`,
      parquet([{ instruction: "s", output: "S" }]),
    );
    await f(hub, root, `${root}/cache`);
  } finally {
    await hub.server.shutdown();
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("split names follow HF's default patterns", () => {
  assert.equal(splitOfPath("data/train-00000-of-00001.parquet"), "train");
  assert.equal(splitOfPath("train.jsonl"), "train");
  assert.equal(splitOfPath("my_validation.json"), "validation");
  assert.equal(splitOfPath("dev/part0.json"), "validation");
  assert.equal(splitOfPath("testing.csv"), "test");
  assert.equal(splitOfPath("pretrain.json"), undefined);
  assert.equal(splitOfPath("data/all.parquet"), undefined);
});

Deno.test("hub datasets: split files, subsets and the parquet conversion, cached", async () => {
  await withHub(async (hub, _root, cacheDir) => {
    const opts = { endpoint: hub.endpoint, cacheDir, progressLine: false };
    const train = await resolveHubDataset({ id: "org/alpaca" }, opts);
    assert.deepEqual(train.map((f) => f.slice(cacheDir.length)), [
      "/org--alpaca/main/data/train-00000-of-00002.parquet",
      "/org--alpaca/main/data/train-00001-of-00002.parquet",
    ]);
    assert.ok(hub.seen.some((p) => p.includes("cursor=")), "the tree listing is paged");
    const test = await resolveHubDataset({ id: "org/alpaca", split: "test" }, opts);
    assert.equal(test.length, 1);
    await assert.rejects(
      resolveHubDataset({ id: "org/alpaca", split: "validation" }, opts),
      /no files of split "validation" \(it has test, train\)/,
    );
    assert.equal((await resolveHubDataset({ id: "org/plain" }, opts))[0].slice(-9), "all.jsonl");
    assert.match(
      (await resolveHubDataset({ id: "org/plain", subset: "en" }, opts))[0],
      /refs--convert--parquet\/en\/train\/0000\.parquet$/,
    );
    assert.match((await resolveHubDataset({ id: "org/script" }, opts))[0], /default\/train\/0000\.parquet$/);
    // a second load of the same dataset makes no request
    const before = hub.seen.length;
    assert.deepEqual(await resolveHubDataset({ id: "org/alpaca" }, opts), train);
    assert.equal(hub.seen.length, before);
    await assert.rejects(
      resolveHubDataset({ id: "org/missing" }, opts),
      (e: Error) => e instanceof DataError && /HTTP 404 .*dataset not found, or gated: set HF_TOKEN/.test(e.message),
    );
  });
});

Deno.test("loadDatasets reads hf_hub_url entries from HF_ENDPOINT", async () => {
  await withHub(async (hub, root, cacheDir) => {
    const info = {
      hub_alpaca: { hf_hub_url: "org/alpaca" },
      hub_sub: { hf_hub_url: "org/plain", subset: "en" },
      hub_missing: { hf_hub_url: "org/missing" },
    };
    const hubOpts = { endpoint: hub.endpoint, cacheDir, progressLine: false };
    const r = await loadDatasets({
      dataset: "hub_alpaca,hub_sub",
      dataset_info: info,
      dataset_dir: root,
      hub: hubOpts,
    });
    assert.deepEqual(r.train.map((e) => [e.prompt[0].content, e.response[0].content]), [["a", "A"], ["b", "B"], [
      "e",
      "E",
    ]]);
    assert.equal(r.train[1].source.row, 1);
    assert.match(r.train[1].source.file, /train-00001-of-00002\.parquet$/);
    await assert.rejects(
      loadDatasets({ dataset: "hub_missing", dataset_info: info, dataset_dir: root, hub: hubOpts }),
      /dataset "hub_missing" \(hf_hub_url org\/missing\): cannot list the files/,
    );
    // HF_ENDPOINT is the default endpoint
    Deno.env.set("HF_ENDPOINT", hub.endpoint);
    try {
      const e = await loadDatasets({ dataset: "hub_alpaca", dataset_info: info, hub: { cacheDir: `${cacheDir}/2` } });
      assert.equal(e.train.length, 2);
    } finally {
      Deno.env.delete("HF_ENDPOINT");
    }
  });
});
