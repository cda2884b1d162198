import assert from "node:assert/strict";
import { parquetWriteBuffer } from "../../deps.ts";
import { DataError, type FileRow, listDataFiles, readDataFile, readDataPath, readLines } from "./files.ts";
import { jsonErrorPosition } from "./files_json.ts";

const SHARED = new URL("../../../shared/llamafactory-data/", import.meta.url).pathname;
const HAVE_SHARED = await Deno.stat(SHARED).then(() => true, () => false);
if (!HAVE_SHARED) console.warn(`skipping the demo-data tests: ${SHARED} not found (../shared is absent)`);

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_files_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function all(it: AsyncIterable<FileRow>): Promise<FileRow[]> {
  const out: FileRow[] = [];
  for await (const r of it) out.push(r);
  return out;
}

async function rejects(p: Promise<unknown>, ...parts: string[]): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof DataError, `expected a DataError, got ${e}`);
    for (const s of parts) {
      assert.ok(e.message.includes(s), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(s)}`);
    }
    return e.message;
  }
  assert.fail("expected an error");
}

Deno.test("json: arrays, column objects and JSON lines in a .json file", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/a.json`,
      '\uFEFF[\n {"instruction": "x", "output": "y"},\n {"instruction": "z"}\n]\n',
    );
    const a = await all(readDataFile(`${dir}/a.json`));
    assert.deepEqual(a.map((r) => [r.row, r.data]), [[1, { instruction: "x", output: "y" }], [2, {
      instruction: "z",
    }]]);
    await Deno.writeTextFile(`${dir}/b.json`, '{\n "text": ["p", "q"],\n "n": [1, 2]\n}');
    assert.deepEqual((await all(readDataFile(`${dir}/b.json`))).map((r) => r.data), [{ text: "p", n: 1 }, {
      text: "q",
      n: 2,
    }]);
    await Deno.writeTextFile(`${dir}/c.json`, '{"text": "p"}\n{"text": "q"}\n');
    assert.deepEqual((await all(readDataFile(`${dir}/c.json`))).map((r) => r.data.text), ["p", "q"]);
  });
});

Deno.test("jsonl: streamed, blank lines skipped, CRLF, rows and lines counted", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.jsonl`, '{"text": "a"}\r\n\r\n{"text": "b\\nc"}\n{"text": "d"}');
    const rows = await all(readDataFile(`${dir}/a.jsonl`));
    assert.deepEqual(rows.map((r) => [r.row, r.line, r.data.text]), [[1, 1, "a"], [2, 3, "b\nc"], [3, 4, "d"]]);
  });
});

Deno.test("bad JSON is reported with file and line", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "a"}\n{"text": "b",}\n');
    await rejects(
      all(readDataFile(`${dir}/bad.jsonl`)),
      `${dir}/bad.jsonl:2: invalid JSON at column 14: Expected double-quoted property name`,
    );
    await Deno.writeTextFile(`${dir}/arr.jsonl`, '{"text": "a"}\n[1, 2]\n');
    await rejects(all(readDataFile(`${dir}/arr.jsonl`)), "arr.jsonl:2: expected a JSON object on each line, got array");
    await Deno.writeTextFile(`${dir}/bad.json`, '[\n  {"a": 1},\n  {"a": 2\n  {"a": 3}\n]');
    await rejects(all(readDataFile(`${dir}/bad.json`)), `${dir}/bad.json:4: invalid JSON at column 3`);
    await Deno.writeTextFile(`${dir}/notobj.json`, '[{"a": 1}, "x"]');
    await rejects(
      all(readDataFile(`${dir}/notobj.json`)),
      "notobj.json row 2: expected an array of objects, got string",
    );
    await Deno.writeTextFile(`${dir}/cols.json`, '{\n"a": [1, 2],\n"b": [1]}');
    await rejects(all(readDataFile(`${dir}/cols.json`)), 'column "b" is 1 long, not 2');
  });
});

Deno.test("jsonErrorPosition finds the first syntax error", () => {
  assert.equal(jsonErrorPosition('{"a": 1}'), 8);
  assert.equal(jsonErrorPosition('{"a": 1,}'), 8);
  assert.equal(jsonErrorPosition("[1, 2"), 5);
  assert.equal(jsonErrorPosition('["a\\x"]'), 4);
  assert.equal(jsonErrorPosition("[tru]"), 1);
  assert.equal(jsonErrorPosition('{"a": "b"} x'), 11);
  assert.equal(jsonErrorPosition('[1.5e3, -0, {"k": [null, false]}]'), 33);
});

Deno.test("csv: header row, quoted newlines, empty cells as empty strings", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.csv`, 'instruction,input,output,label\n"say\nhi",,hello,true\nb,c,d,False\n');
    const rows = await all(readDataFile(`${dir}/a.csv`));
    assert.deepEqual(rows.map((r) => r.data), [
      { instruction: "say\nhi", input: "", output: "hello", label: "true" },
      { instruction: "b", input: "c", output: "d", label: "False" },
    ]);
    await Deno.writeTextFile(`${dir}/bad.csv`, "a,b\n1,2\n3,4,5\n");
    await rejects(all(readDataFile(`${dir}/bad.csv`)), `${dir}/bad.csv:3: invalid CSV`);
  });
});

Deno.test("parquet: row groups, nested values, 64-bit integers as numbers", async () => {
  await withDir(async (dir) => {
    const conv = [[{ from: "human", value: "a" }, { from: "gpt", value: "b" }], [{ from: "human", value: "c" }]];
    const buf = parquetWriteBuffer({
      columnData: [
        { name: "conversations", data: conv },
        { name: "n", data: [1n, 2n], type: "INT64" },
        { name: "text", data: ["x", null], type: "STRING" },
      ],
      rowGroupSize: 1,
    });
    await Deno.writeFile(`${dir}/a.parquet`, new Uint8Array(buf));
    const rows = await all(readDataFile(`${dir}/a.parquet`));
    assert.deepEqual(rows.map((r) => [r.row, r.data]), [
      [1, { conversations: conv[0], n: 1, text: "x" }],
      [2, { conversations: conv[1], n: 2, text: null }],
    ]);
    await Deno.writeTextFile(`${dir}/bad.parquet`, "not parquet at all");
    await rejects(all(readDataFile(`${dir}/bad.parquet`)), "bad.parquet: not a valid parquet file");
  });
});

Deno.test("txt: one row per line, empty lines kept, no row after the final newline", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a.txt`, "one\r\n\ntwo\n");
    const rows = await all(readDataFile(`${dir}/a.txt`));
    assert.deepEqual(rows.map((r) => [r.row, r.data]), [[1, { text: "one" }], [2, { text: "" }], [3, { text: "two" }]]);
  });
});

Deno.test("readLines streams a file larger than its read chunks", async () => {
  await withDir(async (dir) => {
    const lines = Array.from({ length: 20000 }, (_, i) => `line ${i} ${"é".repeat(i % 7)}`);
    await Deno.writeTextFile(`${dir}/big.txt`, lines.join("\n"));
    let n = 0;
    for await (const { text, line } of readLines(`${dir}/big.txt`)) {
      assert.equal(text, lines[line - 1]);
      n++;
    }
    assert.equal(n, lines.length);
    // stopping early closes the file
    for await (const _ of readLines(`${dir}/big.txt`)) break;
  });
});

Deno.test("folders: every file of one type, sorted, dot files skipped", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/d`);
    await Deno.writeTextFile(`${dir}/d/b.jsonl`, '{"t": 2}\n');
    await Deno.writeTextFile(`${dir}/d/a.json`, '[{"t": 1}]');
    await Deno.writeTextFile(`${dir}/d/.DS_Store`, "x");
    assert.deepEqual(await listDataFiles(`${dir}/d`), [`${dir}/d/a.json`, `${dir}/d/b.jsonl`]);
    assert.deepEqual((await all(readDataPath(`${dir}/d`))).map((r) => r.data.t), [1, 2]);
    await Deno.writeTextFile(`${dir}/d/c.csv`, "t\n3\n");
    await rejects(listDataFiles(`${dir}/d`), "must all have one type", "c.csv is csv");
    await Deno.writeTextFile(`${dir}/x.arrow`, "");
    await rejects(listDataFiles(`${dir}/x.arrow`), "Arrow files are not supported");
    await Deno.writeTextFile(`${dir}/x.xlsx`, "");
    await rejects(listDataFiles(`${dir}/x.xlsx`), "unsupported file type", ".csv, .json, .jsonl, .parquet, .txt");
    await rejects(listDataFiles(`${dir}/missing.json`), "not found");
    await Deno.mkdir(`${dir}/empty`);
    await rejects(listDataFiles(`${dir}/empty`), "has no data files");
  });
});

Deno.test({
  name: "demo files read with the expected row counts (needs ../shared)",
  ignore: !HAVE_SHARED,
  async fn() {
    const count = async (f: string) => (await all(readDataFile(SHARED + f))).length;
    assert.equal(await count("reason_tool_use_demo_50.jsonl"), 50);
    assert.equal(await count("c4_demo.jsonl"), 300);
    assert.equal(await count("wiki_demo.txt"), 30);
    assert.equal(await count("alpaca_en_demo.json"), 999);
    const first = (await all(readDataFile(SHARED + "reason_tool_use_demo_50.jsonl")))[0];
    assert.ok(Array.isArray((first.data.messages as { content: unknown }[])[0].content));
  },
});
