import assert from "node:assert/strict";
import { downloadFile, type DownloadProgress, hubCacheDir, isHubId, resolveModel } from "./hub.ts";
import { openModelFolder } from "./hf_folder.ts";
import { writeSafetensors } from "./safetensors.ts";

interface Seen {
  path: string;
  range: string | null;
  auth: string | null;
}

/** A loopback hub serving `${root}/<org>/<name>/<file>` at `/<org>/<name>/resolve/<rev>/<file>`, with Range. */
function startHub(root: string, opts: { ignoreRange?: boolean; cutAfter?: number } = {}) {
  const seen: Seen[] = [];
  let cut = opts.cutAfter;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    seen.push({ path: url.pathname, range: req.headers.get("range"), auth: req.headers.get("authorization") });
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    if (!m) return new Response("bad path", { status: 400 });
    if (m[3] !== "main") {
      return new Response("no rev", { status: 404, headers: { "x-error-code": "RevisionNotFound" } });
    }
    let data: Uint8Array<ArrayBuffer>;
    try {
      data = await Deno.readFile(`${root}/${m[1]}/${m[2]}/${decodeURIComponent(m[4])}`);
    } catch {
      return new Response("Entry not found", { status: 404, headers: { "x-error-code": "EntryNotFound" } });
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
    if (range && !opts.ignoreRange) {
      const start = Number(range[1]);
      if (start >= data.length) return new Response(null, { status: 416 });
      return new Response(data.slice(start), {
        status: 206,
        headers: { "content-range": `bytes ${start}-${data.length - 1}/${data.length}` },
      });
    }
    if (cut !== undefined) {
      // send the first `cut` bytes, then drop the connection
      const head = data.slice(0, cut);
      cut = undefined;
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(head);
          c.close(); // shorter than the content-length: the server drops the connection
        },
      });
      return new Response(body, { headers: { "content-length": String(data.length) } });
    }
    return new Response(data);
  });
  const endpoint = `http://127.0.0.1:${server.addr.port}`;
  return { seen, endpoint, server };
}

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_hub_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A repository folder with config, tokenizer files and weights (one file or two shards). */
async function makeRepo(dir: string, opts: { sharded?: boolean; omit?: string[] } = {}) {
  await Deno.mkdir(dir, { recursive: true });
  const files: Record<string, string> = {
    "config.json": JSON.stringify({ model_type: "llama", hidden_size: 8 }),
    "generation_config.json": JSON.stringify({ eos_token_id: 2 }),
    "tokenizer.json": JSON.stringify({ model: { type: "BPE", vocab: { a: 0, b: 1 } } }),
    "tokenizer_config.json": JSON.stringify({ eos_token: "</s>" }),
  };
  for (const [name, text] of Object.entries(files)) {
    if (!opts.omit?.includes(name)) await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  const big = { dtype: "F32" as const, shape: [64, 64], data: Array.from({ length: 4096 }, (_, i) => Math.sin(i)) };
  const small = { dtype: "BF16" as const, shape: [8], data: [1, 2, 3, 4, 5, 6, 7, 8] };
  if (!opts.sharded) {
    await writeSafetensors(`${dir}/model.safetensors`, { "w.big": big, "w.small": small });
    return;
  }
  await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, { "w.big": big });
  await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, { "w.small": small });
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    JSON.stringify({
      metadata: {},
      weight_map: { "w.big": "model-00001-of-00002.safetensors", "w.small": "model-00002-of-00002.safetensors" },
    }),
  );
}

async function sameBytes(a: string, b: string) {
  assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b), `${a} differs from ${b}`);
}

Deno.test("hub: ids and cache folders", () => {
  assert.ok(isHubId("HuggingFaceTB/SmolLM2-135M"));
  assert.ok(!isHubId("gpt2") && !isHubId("./a/b") && !isHubId("/a/b") && !isHubId("a/b/c") && !isHubId("a/.."));
  assert.equal(hubCacheDir("org/name", "main", "/c/hub/"), "/c/hub/org--name/main");
  assert.equal(hubCacheDir("org/name", "refs/pr/1", "/c"), "/c/org--name/refs--pr--1");
  assert.throws(() => hubCacheDir("org/name", "..", "/c"), /invalid revision/);
});

Deno.test("hub: full download, then a cached second call makes no requests", async () => {
  await withTempDir(async (tmp) => {
    await makeRepo(`${tmp}/srv/org/tiny`);
    const hub = startHub(`${tmp}/srv`);
    try {
      const progress: DownloadProgress[] = [];
      const opts = {
        endpoint: hub.endpoint,
        cacheDir: `${tmp}/cache`,
        token: "secret",
        progressLine: false,
        onProgress: (p: DownloadProgress) => progress.push({ ...p }),
      };
      const dir = await resolveModel("org/tiny", opts);
      assert.equal(dir, `${tmp}/cache/org--tiny/main`);
      for (const f of ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
        await sameBytes(`${dir}/${f}`, `${tmp}/srv/org/tiny/${f}`);
      }
      await sameBytes(`${dir}/model.safetensors`, `${tmp}/srv/org/tiny/model.safetensors`);
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.ok(!names.some((n) => n.endsWith(".partial")), names.join());
      assert.ok(!names.includes("special_tokens_map.json")); // optional, 404 on the server
      assert.ok(hub.seen.every((s) => s.auth === "Bearer secret" && s.range === null));
      assert.ok(hub.seen.some((s) => s.path === "/org/tiny/resolve/main/special_tokens_map.json"));
      const size = (await Deno.stat(`${dir}/model.safetensors`)).size;
      const last = progress.filter((p) => p.file === "org/tiny/model.safetensors").at(-1)!;
      assert.deepEqual(last, { file: "org/tiny/model.safetensors", done: size, total: size });

      using m = await openModelFolder(dir);
      assert.deepEqual([...await m.readF32("w.small")], [1, 2, 3, 4, 5, 6, 7, 8]);

      const before = hub.seen.length;
      assert.equal(await resolveModel("org/tiny", opts), dir);
      assert.equal(hub.seen.length, before, "second call should make no requests");
      // a local folder is returned as is, without requests
      assert.equal(await resolveModel(dir, opts), dir);
      assert.equal(hub.seen.length, before);
    } finally {
      await hub.server.shutdown();
    }
  });
});

Deno.test("hub: resume after a truncated .partial (206 and a server ignoring Range)", async () => {
  for (const ignoreRange of [false, true]) {
    await withTempDir(async (tmp) => {
      await makeRepo(`${tmp}/srv/org/tiny`);
      const hub = startHub(`${tmp}/srv`, { ignoreRange });
      try {
        const src = await Deno.readFile(`${tmp}/srv/org/tiny/model.safetensors`);
        const dir = hubCacheDir("org/tiny", "main", `${tmp}/cache`);
        await Deno.mkdir(dir, { recursive: true });
        const cut = 5000;
        await Deno.writeFile(`${dir}/model.safetensors.partial`, src.slice(0, cut));
        await resolveModel("org/tiny", { endpoint: hub.endpoint, cacheDir: `${tmp}/cache`, progressLine: false });
        const req = hub.seen.filter((s) => s.path.endsWith("/model.safetensors"));
        assert.equal(req.length, 1);
        assert.equal(req[0].range, `bytes=${cut}-`);
        await sameBytes(`${dir}/model.safetensors`, `${tmp}/srv/org/tiny/model.safetensors`);
        assert.ok(!await Deno.stat(`${dir}/model.safetensors.partial`).then(() => true, () => false));
      } finally {
        await hub.server.shutdown();
      }
    });
  }
});

Deno.test("hub: a dropped connection keeps the partial file and the next call resumes", async () => {
  await withTempDir(async (tmp) => {
    await makeRepo(`${tmp}/srv/org/tiny`);
    const src = `${tmp}/srv/org/tiny/model.safetensors`;
    const dest = `${tmp}/out/model.safetensors`;
    await Deno.mkdir(`${tmp}/out`);
    const hub = startHub(`${tmp}/srv`, { cutAfter: 3000 });
    try {
      const url = `${hub.endpoint}/org/tiny/resolve/main/model.safetensors`;
      await assert.rejects(downloadFile(url, dest, { progressLine: false }), /rerun to resume/);
      assert.ok(!await Deno.stat(dest).then(() => true, () => false));
      assert.equal(await downloadFile(url, dest, { progressLine: false }), true);
      await sameBytes(dest, src);
      assert.equal(hub.seen.length, 2);
      assert.equal(hub.seen[1].range, "bytes=3000-");
    } finally {
      await hub.server.shutdown();
    }
  });
});

Deno.test("hub: sharded model", async () => {
  await withTempDir(async (tmp) => {
    await makeRepo(`${tmp}/srv/org/sharded`, { sharded: true });
    const hub = startHub(`${tmp}/srv`);
    try {
      const dir = await resolveModel("org/sharded", {
        endpoint: hub.endpoint,
        cacheDir: `${tmp}/cache`,
        progressLine: false,
      });
      for (const f of ["model.safetensors.index.json", "model-00001-of-00002.safetensors"]) {
        await sameBytes(`${dir}/${f}`, `${tmp}/srv/org/sharded/${f}`);
      }
      using m = await openModelFolder(dir);
      assert.equal(m.tensors.get("w.small")!.file, "model-00002-of-00002.safetensors");
      assert.deepEqual([...await m.readF32("w.small")], [1, 2, 3, 4, 5, 6, 7, 8]);
      const before = hub.seen.length;
      await resolveModel("org/sharded", { endpoint: hub.endpoint, cacheDir: `${tmp}/cache`, progressLine: false });
      assert.equal(hub.seen.length, before);
    } finally {
      await hub.server.shutdown();
    }
  });
});

Deno.test("hub: missing required files, unknown revision and bad ids", async () => {
  await withTempDir(async (tmp) => {
    await makeRepo(`${tmp}/srv/org/notok`, { omit: ["tokenizer.json"] });
    await makeRepo(`${tmp}/srv/org/noweights`);
    await Deno.remove(`${tmp}/srv/org/noweights/model.safetensors`);
    const hub = startHub(`${tmp}/srv`);
    const opts = { endpoint: hub.endpoint, cacheDir: `${tmp}/cache`, progressLine: false };
    try {
      await assert.rejects(
        resolveModel("org/notok", opts),
        new RegExp(
          `required file tokenizer\\.json not found at ${hub.endpoint}/org/notok/resolve/main/tokenizer\\.json`,
        ),
      );
      await assert.rejects(resolveModel("org/noweights", opts), /no safetensors weights: neither .*model\.safetensors/);
      await assert.rejects(resolveModel("org/notok", { ...opts, revision: "v9" }), /HTTP 404.*RevisionNotFound/);
      await assert.rejects(resolveModel(`${tmp}/nope/nothere`, opts), /neither a folder nor a hub model id/);
    } finally {
      await hub.server.shutdown();
    }
  });
});
