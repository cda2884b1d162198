import assert from "node:assert/strict";
import { lossSvg, niceTicks, plotLoss, plotLosses, smooth } from "./plot.ts";

Deno.test("smooth is LLaMA-Factory's EMA", () => {
  // By hand: n = 3, w = 1.8 * (sigmoid(0.15) - 0.5) = 0.0673737216187...
  const w = 1.8 * (1 / (1 + Math.exp(-0.15)) - 0.5);
  const s1 = 4 * w + 2 * (1 - w), s2 = s1 * w + 3 * (1 - w);
  assert.deepEqual(smooth([4, 2, 3]), [4, s1, s2]);
  // Python's plot.smooth (LLaMA-Factory extras/ploting.py) output.
  const py = [4.0, 2.1347474432374987, 2.9417047151107725];
  smooth([4, 2, 3]).forEach((v, i) => assert.ok(Math.abs(v - py[i]) <= 1e-15 * Math.abs(py[i])));
  const py10 = [2.5, 2.3051066990408344, 2.067253692157543, 1.6250379139741118, 1.7224550077354261, 1.3541417436864451];
  const got = smooth([2.5, 2.25, 2.0, 1.5, 1.75, 1.25, 1.0, 1.125, 0.875, 0.75]);
  py10.forEach((v, i) => assert.ok(Math.abs(got[i] - v) <= 1e-15 * v, `smooth[${i}]`));
  assert.deepEqual(smooth([]), []);
});

Deno.test("niceTicks picks round steps covering the range", () => {
  assert.deepEqual(niceTicks(0, 100), [0, 20, 40, 60, 80, 100]);
  assert.deepEqual(niceTicks(0.95, 2.55).map((t) => +t.toFixed(10)), [1, 1.5, 2, 2.5]);
  assert.deepEqual(niceTicks(3, 3), [3]);
});

/** A minimal XML well-formedness check: balanced tags, quoted attributes, no stray `<` or `&`. */
function assertWellFormedXml(xml: string): void {
  const stack: string[] = [];
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, "");
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < body.length) {
    const lt = body.indexOf("<", i);
    const text = body.slice(i, lt < 0 ? body.length : lt);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(text), `unescaped & in ${JSON.stringify(text)}`);
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(body);
    assert.ok(m, `malformed tag at ${JSON.stringify(body.slice(lt, lt + 60))}`);
    if (m[1]) assert.equal(stack.pop(), m[2], `closing </${m[2]}>`);
    else if (!m[4]) stack.push(m[2]);
    i = tag.lastIndex;
  }
  assert.deepEqual(stack, [], "unclosed tags");
}

Deno.test("plotLoss writes training_<key>.svg with both curves", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/a&b<run>`;
    const history = [
      ...Array.from({ length: 25 }, (_, i) => ({ step: (i + 1) * 5, loss: 3 * Math.exp(-i / 8) + 0.1 * Math.sin(i) })),
      { step: 50, eval_loss: 1.5 },
      { step: 100, eval_loss: 1.25 },
      { step: 125, loss: NaN },
    ];
    const files = await plotLosses(out, history, ["loss", "eval_loss", "rewards/accuracies"], { png: false });
    assert.deepEqual(files, [{ svg: `${out}/training_loss.svg` }, { svg: `${out}/training_eval_loss.svg` }]);
    for (
      const [file, n, key] of [["training_loss.svg", 25, "loss"], ["training_eval_loss.svg", 2, "eval_loss"]] as const
    ) {
      const svg = await Deno.readTextFile(`${out}/${file}`);
      assertWellFormedXml(svg);
      assert.ok(svg.includes(`training ${key} of ${dir}/a&amp;b&lt;run&gt;</text>`), "title");
      assert.ok(svg.includes(`>step</text>`) && svg.includes(`>${key}</text>`), "axis labels");
      const lines = [...svg.matchAll(/<polyline class="(\w+)"[^>]* points="([^"]*)"/g)];
      assert.deepEqual(lines.map((m) => m[1]), ["original", "smoothed"]);
      for (const m of lines) {
        const pts = m[2].split(" ").map((p) => p.split(",").map(Number));
        assert.equal(pts.length, n);
        for (const [x, y] of pts) assert.ok(x >= 80 && x <= 576 && y >= 57 && y <= 428, `point ${x},${y} inside axes`);
      }
      assert.ok((svg.match(/<text[^>]*text-anchor="middle">[\d.]+<\/text>/g) ?? []).length >= 3, "x tick labels");
    }
    // A single value still gives a valid plot.
    assertWellFormedXml(lossSvg([1], [2.5], "loss", "t"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plotLoss makes a PNG only when the converter works", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const history = [{ step: 1, loss: 2 }, { step: 2, loss: 1 }];
    // Missing and failing converters: skipped silently, no PNG left behind.
    assert.deepEqual(await plotLoss(dir, history, "loss", { convertCommand: `${dir}/missing` }), {
      svg: `${dir}/training_loss.svg`,
    });
    await Deno.writeTextFile(`${dir}/fail.sh`, `#!/bin/sh\necho partial > "$6"\nexit 1\n`);
    await Deno.writeTextFile(`${dir}/ok.sh`, `#!/bin/sh\ncp "$5" "$6"\n`);
    await Deno.chmod(`${dir}/fail.sh`, 0o755);
    await Deno.chmod(`${dir}/ok.sh`, 0o755);
    assert.equal((await plotLoss(dir, history, "loss", { convertCommand: `${dir}/fail.sh` }))?.png, undefined);
    await assert.rejects(Deno.stat(`${dir}/training_loss.png`), Deno.errors.NotFound);
    assert.equal(
      (await plotLoss(dir, history, "loss", { convertCommand: `${dir}/ok.sh` }))?.png,
      `${dir}/training_loss.png`,
    );
    assert.equal(
      await Deno.readTextFile(`${dir}/training_loss.png`),
      await Deno.readTextFile(`${dir}/training_loss.svg`),
    );
    // A plain { step, loss } list is plotted under the given name; a key no entry of a richer history has: nothing.
    const evalFiles = await plotLoss(dir, [{ step: 1, loss: 3 }, { step: 2, loss: 2 }], "eval_loss", { png: false });
    assert.deepEqual(evalFiles, { svg: `${dir}/training_eval_loss.svg` });
    assert.ok((await Deno.readTextFile(evalFiles.svg)).includes(`training eval_loss of ${dir}</text>`));
    assert.equal(await plotLoss(dir, [{ step: 1, loss: 2, epoch: 1 }], "eval_loss"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plot: one eval point (its smoothed copy 1 ulp off) draws at once with a widened axis", () => {
  assert.deepEqual(niceTicks(4.28, 4.28 + 1e-15).length, 1);
  const svg = lossSvg([3], [4.2831], "eval_loss", "eval loss"); // hung in niceTicks before the fix
  assert.ok(svg.includes("<polyline"));
});
