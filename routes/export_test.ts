/**
 * `POST /sessions/:id/export` variants over real HTTP with the tiny model: the merged folder with its ONNX export
 * (`export_onnx`, as `deno task export` writes it), the adapter alone (`adapter_only`, as a checkpoint holds it), the
 * files listed in the answer, and the 400s naming the field.
 */
import assert from "node:assert/strict";
import { startServer, tinyArgs } from "./testing.ts";

/** The files under `dir`, relative, with their sizes, sorted. */
async function tree(dir: string, rel = ""): Promise<{ path: string; bytes: number }[]> {
  const out: { path: string; bytes: number }[] = [];
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...await tree(dir, p));
    else out.push({ path: p, bytes: (await Deno.stat(`${dir}/${p}`)).size });
  }
  return out.sort((a, b) => a.path < b.path ? -1 : 1);
}

Deno.test("export: merged with ONNX, or the adapter alone; the answer lists the files written", async () => {
  const t = await startServer();
  try {
    const out = `${t.tmp}/run`;
    const { id } = (await t.call("POST", "/sessions", tinyArgs(out))).json;
    await t.call("POST", `/sessions/${id}/step`, { steps: 2 });

    const merged = `${t.tmp}/merged`;
    const onnxBody = { export_dir: merged, export_onnx: true };
    const r = await t.call("POST", `/sessions/${id}/export`, onnxBody);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.dtype, "bf16");
    assert.deepEqual(r.json.files, await tree(merged));
    const paths = r.json.files.map((f: { path: string }) => f.path);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) assert.ok(paths.includes(f), f);
    // Optimum's layout beside the merged folder, and the chat template's Ollama Modelfile.
    for (const f of ["onnx/model.onnx", "Modelfile"]) assert.ok(paths.includes(f), `${f}: ${paths.join(", ")}`);
    assert.ok(r.json.files.every((f: { bytes: number }) => f.bytes > 0));

    // Without export_onnx: the folder is replaced whole (the onnx folder goes).
    const plain = await t.call("POST", `/sessions/${id}/export`, { export_dir: merged });
    assert.equal(plain.status, 200, plain.text);
    assert.ok(!plain.json.files.some((f: { path: string }) => f.path.startsWith("onnx/")));
    assert.deepEqual(plain.json.files, await tree(merged));

    // The adapter alone: the files a checkpoint's adapter has, the same bytes as the session's own save.
    const adapter = `${t.tmp}/adapter`;
    const a = await t.call("POST", `/sessions/${id}/export`, { export_dir: adapter, adapter_only: true });
    assert.equal(a.status, 200, a.text);
    assert.equal(a.json.dtype, null);
    const files = a.json.files.map((f: { path: string }) => f.path);
    assert.ok(files.includes("adapter_config.json") && files.includes("adapter_model.safetensors"), files.join());
    assert.ok(!files.includes("model.safetensors"));
    assert.deepEqual(a.json.files, await tree(adapter));
    const saved = (await t.call("POST", `/sessions/${id}/save`)).json.checkpoint;
    assert.deepEqual(
      await Deno.readFile(`${adapter}/adapter_model.safetensors`),
      await Deno.readFile(`${saved}/adapter_model.safetensors`),
    );
    // Again into the same adapter folder: fine. Into the merged model folder, or with export_onnx: a 400.
    assert.equal(
      (await t.call("POST", `/sessions/${id}/export`, { export_dir: adapter, adapter_only: true })).status,
      200,
    );
    const cases: [Record<string, unknown>, string][] = [
      [{ export_dir: merged, adapter_only: true }, "export_dir"],
      [{ export_dir: adapter, adapter_only: true, export_onnx: true }, "export_onnx"],
      [{ export_dir: `${t.tmp}/x`, export_onnx: "yes" }, "export_onnx"],
      [{ export_dir: `${t.tmp}/x`, export_onnx: true, export_onnx_cache_length: 64 }, "export_onnx_cache_length"],
      [{ export_dir: `${t.tmp}/x`, adapter_only: 1 }, "adapter_only"],
    ];
    for (const [body, field] of cases) {
      const no = await t.call("POST", `/sessions/${id}/export`, body);
      assert.deepEqual([no.status, no.json.field], [400, field], `${JSON.stringify(body)}: ${no.text}`);
    }
  } finally {
    await t.close();
  }
});

Deno.test("export: adapter_only of a full finetuning session is a 400 naming adapter_only", async () => {
  const t = await startServer();
  try {
    const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/full`, { finetuning_type: "full" }))).json;
    const r = await t.call("POST", `/sessions/${id}/export`, { export_dir: `${t.tmp}/a`, adapter_only: true });
    assert.deepEqual([r.status, r.json.field], [400, "adapter_only"], r.text);
  } finally {
    await t.close();
  }
});
