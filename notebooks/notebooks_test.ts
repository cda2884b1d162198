/**
 * The notebooks: committed clean (no outputs, no execution counts, the Deno kernelspec), their code type-checked
 * against the typed client (which a kernel does not do), and — where a Python with
 * nbclient is at hand (`.venv-nb`, or `WHETSTONE_NB_PYTHON`) — every one executed headless on the Deno Jupyter
 * kernel by notebooks/run_notebooks.py, failing on any cell error. Without nbclient that test is skipped with a
 * message, unless `WHETSTONE_REQUIRE_NOTEBOOKS=1` (CI) makes it fail instead.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const HERE = fileURLToPath(new URL(".", import.meta.url));
const ROOT = fileURLToPath(new URL("../", import.meta.url));

const notebooks = [...Deno.readDirSync(HERE)].filter((e) => e.name.endsWith(".ipynb")).map((e) => e.name).sort();

/** The Python that has nbclient, or why there is none. */
function findPython(): { python?: string; why: string } {
  const python = Deno.env.get("WHETSTONE_NB_PYTHON") ?? `${ROOT}.venv-nb/bin/python`;
  try {
    const { success, stderr } = new Deno.Command(python, { args: ["-c", "import nbclient"], stdout: "null" })
      .outputSync();
    if (success) return { python, why: "" };
    return { why: `${python} cannot import nbclient: ${new TextDecoder().decode(stderr).trim().split("\n").at(-1)}` };
  } catch {
    return { why: `no ${python}` };
  }
}

const found = findPython();
const required = Deno.env.get("WHETSTONE_REQUIRE_NOTEBOOKS") === "1";
if (!found.python && !required) {
  console.warn(
    `notebooks_test: skipping the notebook run (${found.why}); make the venv with ` +
      "`python3 -m venv .venv-nb && .venv-nb/bin/pip install nbclient`",
  );
}

Deno.test("notebooks: committed without outputs, on the Deno kernel", () => {
  assert.deepEqual(notebooks, [
    "01_data_preview.ipynb",
    "02_train_lora.ipynb",
    "03_evaluate.ipynb",
    "04_dpo.ipynb",
  ]);
  for (const name of notebooks) {
    const nb = JSON.parse(Deno.readTextFileSync(`${HERE}${name}`));
    assert.equal(nb.nbformat, 4, name);
    assert.equal(nb.metadata?.kernelspec?.name, "deno", `${name}: expected the kernelspec "deno"`);
    const code = nb.cells.filter((c: { cell_type: string }) => c.cell_type === "code");
    assert.ok(code.length > 0, `${name}: no code cells`);
    for (const [i, cell] of nb.cells.entries()) {
      if (cell.cell_type !== "code") continue;
      assert.deepEqual(cell.outputs, [], `${name}: cell ${i} has outputs; clear them before committing`);
      assert.equal(cell.execution_count, null, `${name}: cell ${i} has an execution count; clear outputs`);
    }
  }
});

Deno.test("notebooks: their code type-checks against the typed client (notebooks/whetstone.ts)", async () => {
  // Each notebook's code cells as one module beside whetstone.ts (so its imports resolve as in the kernel).
  const files = notebooks.map((name) => `${HERE}.typecheck_${name.replace(".ipynb", "")}_${Date.now()}.ts`);
  try {
    for (const [i, name] of notebooks.entries()) {
      const nb = JSON.parse(Deno.readTextFileSync(`${HERE}${name}`));
      const code = nb.cells.filter((c: { cell_type: string }) => c.cell_type === "code")
        .map((c: { source: string | string[] }) => Array.isArray(c.source) ? c.source.join("") : c.source);
      Deno.writeTextFileSync(files[i], `${code.join("\n")}\nexport {};\n`);
    }
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["check", ...files],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(res.stderr);
    assert.ok(res.success, `a notebook's code does not type-check:\n${out.slice(-4000)}`);
  } finally {
    for (const f of files) Deno.removeSync(f);
  }
});

/** Runs notebooks/run_notebooks.py with `args`; its exit status and output (the kernel's warning left out). */
async function runNotebooks(args: string[]): Promise<{ success: boolean; out: string }> {
  const res = await new Deno.Command(found.python!, {
    args: [`${HERE}run_notebooks.py`, ...args],
    cwd: ROOT,
    env: { DENO: Deno.execPath(), NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(res.stderr).split("\n").filter((l) => !/"deno jupyter" is unstable/.test(l));
  return { success: res.success, out: `${new TextDecoder().decode(res.stdout)}${err.join("\n")}`.trim() };
}

// deno-lint-ignore no-explicit-any
type Notebook = { cells: { cell_type: string; outputs?: { data?: Record<string, any> }[] }[] };

/** The mime bundles a notebook's code cells showed. */
function displays(nb: Notebook): Record<string, string>[] {
  const join = (v: string | string[]) => Array.isArray(v) ? v.join("") : v;
  return nb.cells.flatMap((c) => c.outputs ?? []).map((o) =>
    Object.fromEntries(Object.entries(o.data ?? {}).map(([k, v]) => [k, join(v)]))
  );
}

const runnable = { ignore: !found.python && !required };

Deno.test({
  name: "notebooks: every notebook runs headless on the Deno Jupyter kernel and draws its tables and plot",
  ...runnable,
  async fn() {
    assert.ok(found.python, `WHETSTONE_REQUIRE_NOTEBOOKS=1 but ${found.why}`);
    const saved = `${ROOT}out/notebooks/executed`;
    const { success, out } = await runNotebooks(["--timeout", "120", "--save", saved]);
    assert.ok(success, `run_notebooks.py failed:\n${out}`);
    for (const name of notebooks) assert.match(out, new RegExp(`^ok +${name.replace(".", "\\.")}:`, "m"), out);
    console.log(out);

    const read = (name: string): Notebook => JSON.parse(Deno.readTextFileSync(`${saved}/${name}`));
    const preview = displays(read("01_data_preview.ipynb"));
    assert.ok(preview.some((d) => /<table>.*whetstone_demo/s.test(d["text/html"] ?? "")), "no dataset table");
    assert.ok(preview.some((d) => /line-through">&lt;\|im_start\|&gt;system/.test(d["text/html"] ?? "")), "no spans");
    const train = displays(read("02_train_lora.ipynb"));
    const plot = train.find((d) => d["image/svg+xml"]);
    assert.ok(plot, "02_train_lora.ipynb drew no loss plot");
    assert.match(plot["text/plain"], /: 60 points, last loss [\d.]+ at step 60$/);
    const evaluate = displays(read("03_evaluate.ipynb"));
    assert.ok(evaluate.some((d) => /<td[^>]*>before<\/td>.*<td[^>]*>after<\/td>/s.test(d["text/html"] ?? "")));
    const dpo = displays(read("04_dpo.ipynb"));
    const pairsTable = /<table><caption>whetstone_pref: .*<th>chosen<\/th><th>rejected<\/th>.*I don't know\./s;
    assert.ok(dpo.some((d) => pairsTable.test(d["text/html"] ?? "")), "04_dpo.ipynb showed no table of pairs");
    const panel = dpo.find((d) => /^DPO loss: /.test(d["text/plain"] ?? ""));
    assert.ok(panel, "04_dpo.ipynb drew no plots");
    assert.equal(panel["text/html"].match(/<img [^>]*src="data:image\/svg\+xml;/g)?.length, 3, "expected 3 plots");
    assert.match(panel["text/plain"], /^reward accuracy: 27 points, last rewards\/accuracies [\d.]+ at step 27$/m);
    assert.ok(dpo.some((d) => /rewards\/accuracies \*\*[\d.]+ → [\d.]+\*\*/.test(d["text/markdown"] ?? "")));
  },
});

Deno.test({
  name: "notebooks: the runner fails on a cell error and names the notebook",
  ...runnable,
  async fn() {
    assert.ok(found.python, `WHETSTONE_REQUIRE_NOTEBOOKS=1 but ${found.why}`);
    const dir = await Deno.makeTempDir({ prefix: "whetstone-nb-" });
    try {
      const cell = (source: string) => ({
        cell_type: "code",
        execution_count: null,
        metadata: {},
        outputs: [],
        source,
      });
      const nb = {
        cells: [cell("const x = 1;"), cell('throw new Error("boom " + x);'), cell("console.log('not reached');")],
        metadata: { kernelspec: { name: "deno", display_name: "Deno", language: "typescript" } },
        nbformat: 4,
        nbformat_minor: 5,
      };
      await Deno.writeTextFile(`${dir}/bad.ipynb`, JSON.stringify(nb));
      const { success, out } = await runNotebooks(["--timeout", "30", `${dir}/bad.ipynb`]);
      assert.ok(!success, out);
      assert.match(out, /^FAILED bad\.ipynb after 2\/3 cells/m);
      assert.match(out, /Error: boom 1/);
      assert.match(out, /0 passed, 1 failed/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
