/**
 * HF's `optim_args` ("key=value,key=value", spaces dropped: transformers' `_parse_optim_args`) and what `optim: sgd`
 * reads from it (transformers' `_get_sgd`: `momentum`, `dampening`, `weight_decay` as floats, `nesterov` as
 * true/1/yes). Its `weight_decay` changes nothing: HF Trainer's param groups each carry their own (`weight_decay` or
 * 0), which win over the optimizer's default. Other optimizers here read nothing from it, as in transformers.
 * @module
 */

/** transformers' `_parse_optim_args`: `{}` for null or empty text. Throws on an entry without one `=`. */
export function parseOptimArgs(text: string | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!text) return out;
  for (const mapping of text.replaceAll(" ", "").split(",")) {
    const parts = mapping.split("=");
    if (parts.length !== 2) {
      throw new Error(`expected key=value entries separated by commas, got ${JSON.stringify(mapping)}`);
    }
    out[parts[0]] = parts[1];
  }
  return out;
}

/** torch.optim.SGD's settings as `_get_sgd` takes them from `optim_args` (unset: torch's defaults). */
export interface SgdArgs {
  momentum: number;
  dampening: number;
  nesterov: boolean;
}

/** The SGD settings of `optim_args`, checked as torch.optim.SGD checks them (dampening 0 only, here). */
export function sgdArgsOf(text: string | null | undefined): SgdArgs {
  const a = parseOptimArgs(text);
  const num = (k: string, def: number) => {
    if (a[k] === undefined) return def;
    const v = Number(a[k]);
    if (a[k] === "" || !Number.isFinite(v)) throw new Error(`${k}: expected a number, got ${JSON.stringify(a[k])}`);
    return v;
  };
  const out: SgdArgs = {
    momentum: num("momentum", 0),
    dampening: num("dampening", 0),
    nesterov: a.nesterov !== undefined && ["true", "1", "yes"].includes(a.nesterov.toLowerCase()),
  };
  num("weight_decay", 0); // checked as _get_sgd's float() would, then overridden by the groups
  if (out.momentum < 0) throw new Error(`momentum: Invalid momentum value: ${out.momentum}`);
  if (out.nesterov && (out.momentum <= 0 || out.dampening !== 0)) {
    throw new Error("nesterov: Nesterov momentum requires a momentum and zero dampening");
  }
  if (out.dampening !== 0) throw new Error(`dampening: only 0 is supported by Whetstone yet, got ${out.dampening}`);
  return out;
}
