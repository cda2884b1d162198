/**
 * Reads a YAML config and applies `key=value` overrides (values parsed as YAML scalars), as
 * `llamafactory-cli <verb> config.yaml key=value ...` does. The verbs without a full argument table
 * (chat, export) read their keys from the result.
 * @module
 */
import { parseYaml } from "../../deps.ts";

/** The mapping in `path` with `overrides` applied; errors name the file or the override. */
export async function readConfigFile(
  path: string,
  overrides: readonly string[] = [],
): Promise<Record<string, unknown>> {
  let cfg: unknown;
  try {
    cfg = parseYaml(await Deno.readTextFile(path)) ?? {};
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`, { cause: e });
  }
  if (typeof cfg !== "object" || Array.isArray(cfg)) {
    throw new Error(
      `${path}: expected a mapping of argument names to values, got ${Array.isArray(cfg) ? "a list" : typeof cfg}`,
    );
  }
  const out = { ...(cfg as Record<string, unknown>) };
  for (const o of overrides) {
    const i = o.indexOf("=");
    if (i < 1) throw new Error(`override "${o}": expected key=value`);
    out[o.slice(0, i)] = parseYaml(o.slice(i + 1));
  }
  return out;
}
