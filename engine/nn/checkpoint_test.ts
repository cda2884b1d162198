/**
 * Activation checkpointing per decoder layer: the same loss and gradients as without it (the recomputed
 * forward is the same ops on the same inputs), with LoRA dropout too, and a smaller planned arena.
 */
import assert from "node:assert/strict";
import { backward, crossEntropy, Graph, reshape, type Tensor } from "../graph/mod.ts";
import { planGraph } from "../exec/plan.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import type { Executor } from "../exec/executor.ts";
import { loadModel } from "./model.ts";
import { traceDecoder } from "./decoder.ts";
import { attachAdapter } from "./lora.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;

async function traced(family: string, ex: Executor, checkpoint: boolean, L: number) {
  const model = await loadModel(`${root}${family}`, { executor: ex, dtype: "f32" });
  await attachAdapter(model, { r: 4, alpha: 8, targets: ["all"], dropout: 0.1 }, { seed: 3 });
  const g = new Graph();
  const B = 2;
  const inp = {
    ids: g.input("ids", [B, L], "i32"),
    positions: g.input("positions", [B, L], "i32"),
    segments: g.input("segments", [B, L], "i32"),
  };
  const seed = g.input("seed", [], "u32");
  const out = traceDecoder(model.config, inp, { ...model.weights(g, { seed }), checkpoint });
  const labels = g.input("labels", [B * L], "i32");
  const loss = crossEntropy(reshape(out.logits, [B * L, model.config.vocab]), labels);
  g.output("loss", loss);
  const names = [...model.adapter!.params.keys()];
  const ps: Tensor[] = names.map((n) => g.param(model.prefix + n, model.adapter!.params.get(n)!.shape));
  backward(loss, ps).forEach((gr, i) => g.output(`grad:${names[i]}`, gr));
  const V = model.config.vocab;
  const feeds = {
    ids: Array.from({ length: B * L }, (_, i) => (i * 37 + 5) % V),
    positions: Array.from({ length: B * L }, (_, i) => i % L),
    segments: Array.from({ length: B * L }, (_, i) => (i % L < L - 2 ? 1 : 0)),
    labels: Array.from({ length: B * L }, (_, i) => (i * 11 + 3) % V),
    seed: [7],
  };
  return { g, out: await (await ex.compile(g)).run(feeds), names };
}

for (const family of ["llama", "gemma2"]) {
  for (
    const [exName, make] of [
      ["reference", () => Promise.resolve(new ReferenceExecutor())],
      ["onnx", () => OnnxExecutor.create()],
    ] as const
  ) {
    Deno.test(`checkpointing ${family} on ${exName}: the same loss and LoRA gradients, recomputed`, async () => {
      const plain = await traced(family, await make(), false, 12);
      const ckpt = await traced(family, await make(), true, 12);
      assert.ok(ckpt.g.checkpoints.length > 0 && ckpt.g.nodes.length > plain.g.nodes.length, "layers recomputed");
      assert.ok(Math.abs(ckpt.out.loss[0] - plain.out.loss[0]) <= 1e-6 * Math.abs(plain.out.loss[0]));
      for (const n of plain.names) {
        const a = plain.out[`grad:${n}`], b = ckpt.out[`grad:${n}`];
        let worst = 0, scale = 0;
        for (let i = 0; i < a.length; i++) {
          worst = Math.max(worst, Math.abs(a[i] - b[i]));
          scale = Math.max(scale, Math.abs(a[i]));
        }
        assert.ok(worst <= 1e-6 * Math.max(scale, 1e-3), `${n}: ${worst} (scale ${scale})`);
      }
    });
  }
}

Deno.test("checkpointing: the planned arena shrinks (activations of a layer live only while it is recomputed)", async () => {
  const plain = await traced("llama", new ReferenceExecutor(), false, 64);
  const ckpt = await traced("llama", new ReferenceExecutor(), true, 64);
  const a = planGraph(plain.g).arenaBytes, b = planGraph(ckpt.g).arenaBytes;
  assert.ok(b < a, `checkpointed arena ${b} vs ${a}`);
});

Deno.test("checkpoint: a segment with an effect op is refused", () => {
  const g = new Graph();
  const p = g.param("p", [2]);
  assert.throws(() => g.checkpoint(() => g.apply("assign", [p, p])), /has effects/);
});
