/**
 * Compile checks of kernels whose features this adapter may lack (test helper): the f16 variant is
 * compiled with f16 read as f32 (the same program over f32, so every name, type and index expression
 * is checked, though not the f16 conversions), the subgroup variant as written — naga parses and
 * type-checks the whole module before it reports the missing SUBGROUP capability, so the only
 * error allowed there is that one.
 * @module
 */

/** WGSL `code` with f16 replaced by f32 and `enable f16;` dropped (compiles on any adapter). */
export function f16AsF32(code: string): string {
  return code.replace(/^enable f16;\n/m, "").replace(/\bf16\b/g, "f32");
}

/** The validation errors of compiling `code` into a compute pipeline on `device` (entry `main`), trimmed. */
export async function compileErrors(device: GPUDevice, code: string): Promise<string[]> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const err = await device.popErrorScope();
  const msgs = info.messages.filter((m) => m.type === "error").map((m) => m.message.trim());
  if (err && !msgs.length) msgs.push(err.message.trim());
  return msgs;
}

/** True when every message is only naga's "requires capability SUBGROUP" (the module parsed and type-checked). */
export function onlyMissingSubgroups(msgs: readonly string[]): boolean {
  return msgs.length > 0 && msgs.every((m) => /missing capability/.test(m) && /Capabilities\(SUBGROUP\)/.test(m));
}
