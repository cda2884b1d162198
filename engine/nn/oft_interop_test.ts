/**
 * PEFT interop of OFT: an adapter attached, perturbed and saved here loads with `PeftModel.from_pretrained`
 * (engine/io/peft_check.py, run with the repository's .venv; skipped with a message when it is absent) and gives the
 * same logits (plain, and with PEFT's block_share / coft).
 */
import assert from "node:assert/strict";
import { openSafetensors } from "../io/safetensors.ts";
import { loadModel } from "./model.ts";
import { attachOft, oftConfigFromArgs, saveOft } from "./oft.ts";
import { Rng } from "../util/rng.ts";

const repo = new URL("../../", import.meta.url).pathname;
const python = `${repo}.venv/bin/python`;
const hasPython = await Deno.stat(python).then(() => true, () => false);
if (!hasPython) console.warn(`oft_interop_test: ${python} is absent, so the PEFT OFT interop test is skipped`);

Deno.test({
  name: "interop: OFT adapters written here load in PEFT with the same logits",
  ignore: !hasPython,
  fn: async () => {
    const ids = [[5, 17, 99, 3, 64, 127, 8, 42, 77, 1, 30, 66]];
    const dir = await Deno.makeTempDir();
    try {
      const cases: { base: string; logits: Float32Array }[] = [];
      const variants = [{}, {}, { blockShare: true, coft: true, eps: 0.01 }, { coft: true, eps: 0.02 }];
      for (
        const [base, args] of [
          ["llama", { oft_rank: 0, oft_block_size: 16, oft_target: "all", module_dropout: 0 }],
          ["qwen2", { oft_rank: 4, oft_block_size: 0, oft_target: ["q_proj", "down_proj"], module_dropout: 0.1 }],
          // PEFT's block_share and coft (constrained OFT): PEFT's forward projects the saved weights first, as ours does.
          ["llama", { oft_rank: 0, oft_block_size: 8, oft_target: "all", module_dropout: 0 }],
          ["qwen2", { oft_rank: 0, oft_block_size: 8, oft_target: "all", module_dropout: 0 }],
        ] as const
      ) {
        const model = await loadModel(`${repo}fixtures/models/${base}`, { executor: "reference" });
        const cfg = oftConfigFromArgs({ ...args, oft_target: args.oft_target as string | string[] });
        await attachOft(model, { ...cfg, ...variants[cases.length] });
        const rng = new Rng(cases.length + 3);
        for (const [k, p] of model.adapter!.params) {
          const v = await model.executor.getParam(k);
          model.executor.setParam(k, v.map((x) => x + 0.05 * rng.normal()), p.shape);
        }
        await saveOft(model, `${dir}/${cases.length}`, `${repo}fixtures/models/${base}`);
        cases.push({ base, logits: (await model.forward(ids)).logits });
      }
      const out = `${dir}/logits.safetensors`;
      const res = await new Deno.Command(python, {
        args: [
          `${repo}engine/io/peft_check.py`,
          out,
          JSON.stringify(ids),
          ...cases.map((c, i) => `${repo}fixtures/models/${c.base}::${dir}/${i}`),
        ],
        cwd: repo,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(res.code, 0, new TextDecoder().decode(res.stderr).slice(-3000));
      const f = await openSafetensors(out);
      for (const [i, c] of cases.entries()) {
        const want = await f.readF32(`logits.${i}`);
        let worst = 0;
        for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(want[k] - c.logits[k]));
        assert.ok(worst <= 1e-4, `${c.base}: max |Δlogit| ${worst} vs PEFT`);
      }
      f.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
