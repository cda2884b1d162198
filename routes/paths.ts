/**
 * Confining request paths to the configured roots: a relative path is taken from the first root, symbolic links
 * are resolved (through the deepest part of the path that exists), and a path outside every root is refused with
 * a 400 naming the field, so no `../` or link leads out of them.
 * @module
 */
import { isAbsolute, join, normalize, relative, sep } from "node:path";
import { isHubId, type TrainArgs } from "../engine/mod.ts";
import { badRequest } from "./http.ts";
import { exists } from "../engine/util/fs.ts";

/** `path` with links resolved through its deepest existing ancestor (the rest appended as written). */
async function realish(path: string): Promise<string> {
  const rest: string[] = [];
  let cur = path;
  for (;;) {
    try {
      return join(await Deno.realPath(cur), ...rest.reverse());
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      const parent = join(cur, "..");
      if (parent === cur) return path;
      rest.push(cur.slice(parent.length).replace(/^[/\\]+/, ""));
      cur = parent;
    }
  }
}

/** The folders request paths may name. */
export class Roots {
  private constructor(readonly dirs: string[]) {}

  /** Resolves the roots (they must exist); relative ones from the current directory. */
  static async of(dirs: readonly string[]): Promise<Roots> {
    if (!dirs.length) throw new Error("expected at least one root folder");
    const out: string[] = [];
    for (const d of dirs) {
      try {
        out.push(await Deno.realPath(d));
      } catch (e) {
        throw new Error(`root folder ${JSON.stringify(d)} cannot be used: ${(e as Error).message}`);
      }
    }
    return new Roots(out);
  }

  /** True when `abs` (already resolved) is one of the roots or inside one. */
  contains(abs: string): boolean {
    return this.dirs.some((r) => abs === r || abs.startsWith(r.endsWith(sep) ? r : r + sep));
  }

  /** The resolved absolute path of `p` (relative: from the first root); a 400 naming `field` when outside. */
  async path(field: string, p: string): Promise<string> {
    if (typeof p !== "string" || !p.length) throw badRequest(field, `expected a path, got ${JSON.stringify(p)}`);
    if (p.includes("\0")) throw badRequest(field, "a path cannot contain NUL characters");
    const abs = normalize(isAbsolute(p) ? p : join(this.dirs[0], p));
    const real = await realish(abs);
    if (!this.contains(real)) {
      throw badRequest(field, `${JSON.stringify(p)} is outside the allowed roots (${this.dirs.join(", ")})`);
    }
    return real;
  }

  /** Like {@link path}, but a hub id (`org/name`) that is not a local folder is kept as it is. */
  async modelPath(field: string, p: string): Promise<string> {
    if (isHubId(p) && !isAbsolute(p) && !await exists(join(this.dirs[0], p))) return p;
    return await this.path(field, p);
  }

  /** `abs` relative to the root holding it (for listings). */
  display(abs: string): string {
    const root = this.dirs.find((r) => abs === r || abs.startsWith(r + sep));
    return root ? relative(root, abs) || "." : abs;
  }

  /** Confines every path argument of `a` in place (model, adapters, data, output, cache, checkpoint). */
  async confineArgs(a: TrainArgs): Promise<void> {
    a.model_name_or_path = await this.modelPath("model_name_or_path", a.model_name_or_path);
    const list = async (key: string, ps: string[]) => {
      const out: string[] = [];
      for (const p of ps) out.push(await this.modelPath(key, p));
      return out;
    };
    if (a.adapter_name_or_path) a.adapter_name_or_path = await list("adapter_name_or_path", a.adapter_name_or_path);
    // The reference and reward models of the preference stages are model paths too.
    if (a.ref_model) a.ref_model = await this.modelPath("ref_model", a.ref_model);
    if (a.ref_model_adapters) a.ref_model_adapters = await list("ref_model_adapters", a.ref_model_adapters);
    if (a.reward_model) a.reward_model = await this.modelPath("reward_model", a.reward_model);
    if (a.reward_model_adapters) {
      a.reward_model_adapters = await list("reward_model_adapters", a.reward_model_adapters);
    }
    if (a.dataset_dir !== "ONLINE") a.dataset_dir = await this.path("dataset_dir", a.dataset_dir);
    a.output_dir = await this.path("output_dir", a.output_dir);
    if (a.cache_dir) a.cache_dir = await this.path("cache_dir", a.cache_dir);
    if (a.deepspeed) a.deepspeed = await this.path("deepspeed", a.deepspeed);
    if (a.logging_dir) a.logging_dir = await this.path("logging_dir", a.logging_dir);
    if (typeof a.resume_from_checkpoint === "string") {
      a.resume_from_checkpoint = await this.path("resume_from_checkpoint", a.resume_from_checkpoint);
    }
  }
}
