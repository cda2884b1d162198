/**
 * `deno task export config.yaml [key=value ...]`: LLaMA-Factory's export (merge the adapter, write an HF folder,
 * optionally ONNX) from a YAML config; the work is engine/nn/export.ts and engine/nn/onnx_export.ts.
 * @module
 */
import { readConfigFile } from "../engine/config/yaml_file.ts";
import { resolveModel } from "../engine/io/hub.ts";
import { exportModel, parseExportArgs } from "../engine/nn/export.ts";
import { attachAdapterFolder } from "../engine/nn/adapters.ts";
import { loadModel } from "../engine/nn/model.ts";
import { exportOnnxBeside } from "../engine/nn/onnx_export.ts";

/** The `export` verb: `deno task export config.yaml [key=value ...]`; returns the exit code. */
export async function exportMain(argv: string[]): Promise<number> {
  const [path, ...overrides] = argv;
  if (!path) {
    console.error("usage: deno task export config.yaml [key=value ...]");
    return 2;
  }
  const cfg = await readConfigFile(path, overrides);
  if (typeof cfg.model_name_or_path !== "string") throw new Error("model_name_or_path: required");
  const source = await resolveModel(cfg.model_name_or_path);
  const args = parseExportArgs(cfg, JSON.parse(await Deno.readTextFile(`${source}/config.json`)));
  const model = await loadModel(source, { dtype: "f32", executor: "reference" });
  if (args.adapterNameOrPath) await attachAdapterFolder(model, args.adapterNameOrPath);
  await exportModel(model, args.exportDir, {
    source,
    shardBytes: args.exportSize * 1e9,
    dtype: args.dtype,
    template: args.template,
  });
  console.log(
    `exported ${args.modelNameOrPath}${args.adapterNameOrPath ? ` + ${args.adapterNameOrPath}` : ""} ` +
      `(${args.dtype}) to ${args.exportDir}`,
  );
  if (args.onnx) {
    const merged = await loadModel(args.exportDir, { executor: "reference" });
    try {
      const info = await exportOnnxBeside(merged, args.exportDir);
      console.log(`exported ONNX (${info.files.join(", ")}) to ${args.exportDir}/onnx`);
    } finally {
      merged.executor.dispose();
    }
  }
  return 0;
}
