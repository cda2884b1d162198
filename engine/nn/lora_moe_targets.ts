/**
 * PEFT 0.21's rewrite of LoRA targets for the mixture-of-experts families whose experts transformers 5 fuses
 * (peft/utils/transformers_weight_conversion.py, `_convert_peft_config_moe`, run by every get_peft_model and
 * PeftModel.from_pretrained on transformers 5). LLaMA-Factory hands `lora_target` (its "all" = the leaf names of
 * every nn.Linear, find_all_linear_modules) to PEFT as `target_modules`, so this is what its users get:
 *
 * - `qwen3_moe`, `deepseek_v3`, `glm4_moe` (transformers' "qwen2_moe" conversion pattern; not `qwen2_moe` itself):
 *   an entry equal to or ending in `.gate_proj` / `.up_proj` / `.down_proj` leaves `target_modules` and becomes
 *   `target_parameters` `gate_up_proj` / `down_proj`, i.e. LoRA on the routed experts' fused parameters
 *   (lora_experts.ts). Dense layers' MLPs and shared experts, though named the same, then get no LoRA at all.
 * - `mixtral`: the same with `w1` / `w3` → `gate_up_proj`, `w2` → `down_proj`.
 * - Naming only one of the two fused projections (gate_proj without up_proj) is refused, as PEFT refuses it; naming
 *   both gives the fused adapter rank 2r and alpha 2α (PEFT's rank_pattern / alpha_pattern `.*\.gate_up_proj`).
 * - `gate` (the router) becomes `target_parameters` `gate.weight` in PEFT; Whetstone refuses it, and refuses PEFT's
 *   own "all-linear" string on these families (it adds the router), while LLaMA-Factory's "all" is converted.
 *
 * `qwen2_moe`, `gpt_oss` and dense families are left as they are (PEFT has no conversion for them).
 * @module
 */
import type { LoraConfig } from "../io/peft.ts";
import type { DecoderConfig } from "./config.ts";

/** PEFT's `_MOE_TARGET_MODULE_MAPPING` (old name → fused parameter) and `_MOE_FUSED_TARGETS`, per family. */
const CONVERSIONS: Record<string, { map: [string, string][]; fused: string[] }> = {
  qwen2_moe_pattern: {
    map: [["gate", "gate.weight"], ["gate_proj", "gate_up_proj"], ["up_proj", "gate_up_proj"], [
      "down_proj",
      "down_proj",
    ]],
    fused: ["gate_proj", "up_proj"],
  },
  mixtral: {
    map: [["gate", "gate.weight"], ["w1", "gate_up_proj"], ["w3", "gate_up_proj"], ["w2", "down_proj"]],
    fused: ["w1", "w3"],
  },
};
const PATTERN: Record<string, string> = {
  qwen3_moe: "qwen2_moe_pattern",
  deepseek_v3: "qwen2_moe_pattern",
  glm4_moe: "qwen2_moe_pattern",
  mixtral: "mixtral",
};

/** Whether PEFT rewrites LoRA targets for this family's fused experts. */
export function convertsMoeTargets(c: DecoderConfig): boolean {
  return PATTERN[c.family] !== undefined;
}

/**
 * `cfg` as PEFT turns it into on transformers 5 for `c`'s family (see the module doc); unchanged for families PEFT
 * does not convert. `allLinear` gives LLaMA-Factory's "all" (the distinct leaf names of the linears). Throws on the
 * router, on half of a fused pair, and on a regex or "all-linear" that reaches the renamed projections.
 */
export function peftMoeTargets(c: DecoderConfig, cfg: LoraConfig, allLinear: () => string[]): LoraConfig {
  const pattern = PATTERN[c.family];
  if (!pattern) return cfg;
  const { map, fused } = CONVERSIONS[pattern];
  const olds = map.map(([o]) => o);
  if (typeof cfg.targets === "string") {
    if (cfg.targets === "all") return peftMoeTargets(c, { ...cfg, targets: ["all"] }, allLinear);
    if (cfg.targets === "all-linear") {
      throw new Error(
        `target_modules "all-linear" on ${c.family}: PEFT also puts LoRA on the router (gate.weight), which is not ` +
          `supported; use LLaMA-Factory's lora_target "all" or name the modules`,
      );
    }
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${cfg.targets})$`);
    } catch {
      return cfg; // resolveTargets reports the invalid regex
    }
    const hit = olds.find((o) => re.test(`model.layers.0.mlp.${o}`) || re.test(`model.layers.0.mlp.experts.${o}`));
    if (hit) {
      throw new Error(
        `target_modules regex ${JSON.stringify(cfg.targets)} reaches ${hit}, which PEFT remaps onto ${c.family}'s ` +
          `fused experts; name the targets instead (e.g. lora_target "q_proj,${fused.join(",")}")`,
      );
    }
    return cfg;
  }
  const listed = cfg.targets.flatMap((t) => (t === "all" || t === "all-linear" ? allLinear() : [t]));
  const remaining: string[] = [], params = new Set(cfg.targetParameters ?? []), seen = new Set<string>();
  for (const t of new Set(listed)) {
    const m = map.find(([o]) => t === o || t.endsWith(`.${o}`));
    if (!m) {
      remaining.push(t);
      continue;
    }
    if (m[1] === "gate.weight") {
      throw new Error(
        `LoRA target ${JSON.stringify(t)} on ${c.family} is the router, which PEFT adapts as the parameter ` +
          `gate.weight: not supported`,
      );
    }
    params.add(m[1]);
    seen.add(m[0]);
  }
  const got = fused.filter((f) => seen.has(f));
  if (got.length && got.length < fused.length) {
    throw new Error(
      `Cannot convert LoRA target(s) ${got.join(", ")} on ${c.family} without also targeting ` +
        `${fused.filter((f) => !seen.has(f)).join(", ")}: they are fused into the experts' gate_up_proj (as in PEFT)`,
    );
  }
  if (!params.size) return { ...cfg, targets: remaining };
  const gateUp = got.length ? { r: cfg.r * fused.length, alpha: cfg.alpha * fused.length } : cfg.gateUp;
  return {
    ...cfg,
    targets: remaining,
    targetParameters: [...params].sort(),
    ...(gateUp ? { gateUp } : {}),
  };
}
