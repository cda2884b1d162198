import assert from "node:assert/strict";
import { exists, isDir, isFile, tempBeside, writeAtomic, writeFileAtomic } from "./fs.ts";

async function inTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_fs_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("exists / isFile / isDir tell files, folders, dangling links and absence apart", () =>
  inTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "x");
    await Deno.symlink(`${dir}/gone`, `${dir}/dangling`);
    assert.deepEqual(
      [await exists(`${dir}/f`), await isFile(`${dir}/f`), await isDir(`${dir}/f`)],
      [true, true, false],
    );
    assert.deepEqual([await exists(dir), await isFile(dir), await isDir(dir)], [true, false, true]);
    assert.deepEqual([await exists(`${dir}/none`), await isFile(`${dir}/none`), await isDir(`${dir}/none`)], [
      false,
      false,
      false,
    ]);
    assert.equal(await exists(`${dir}/dangling`), false, "a dangling link is followed to nothing");
    assert.equal(await exists(`${dir}/dangling`, { followLinks: false }), true, "the link itself is there");
  }));

Deno.test("exists propagates errors other than NotFound", () =>
  inTemp(async (dir) => {
    await Deno.writeTextFile(`${dir}/f`, "x");
    // A path through a file is not "absent": the OS says NotADirectory, which must not read as false.
    await assert.rejects(() => exists(`${dir}/f/child`), (e) => !(e instanceof Deno.errors.NotFound));
  }));

Deno.test("writeFileAtomic replaces the file whole and leaves no temporary file", () =>
  inTemp(async (dir) => {
    await writeFileAtomic(`${dir}/a.json`, "old");
    await writeFileAtomic(`${dir}/a.json`, new TextEncoder().encode("new"));
    assert.equal(await Deno.readTextFile(`${dir}/a.json`), "new");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.json"]);
  }));

Deno.test("writeAtomic keeps the old file and removes the temporary one when filling fails", () =>
  inTemp(async (dir) => {
    await writeFileAtomic(`${dir}/a.txt`, "kept");
    await assert.rejects(
      () =>
        writeAtomic(`${dir}/a.txt`, async (f) => {
          await f.write(new TextEncoder().encode("half"));
          throw new Error("disk full");
        }),
      /disk full/,
    );
    assert.equal(await Deno.readTextFile(`${dir}/a.txt`), "kept");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.txt"]);
  }));

Deno.test("tempBeside names a fresh hidden sibling", () => {
  const a = tempBeside("/x/y/model.safetensors"), b = tempBeside("/x/y/model.safetensors");
  assert.match(a, /^\/x\/y\/\.model\.safetensors\.[0-9a-f]{12}\.tmp$/);
  assert.notEqual(a, b);
  assert.match(tempBeside("rel", "old"), /^\.rel\.[0-9a-f]{12}\.old$/);
});
