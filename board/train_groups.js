/**
 * The Train tab's collapsible groups (LlamaBoard's accordions): extra settings, precision, LoRA, RLHF, freeze,
 * GaLore, BAdam and quantization. Each field's `name` is its YAML key.
 * @module
 */
import { html } from "htm/preact";
import { Check, Group, Input, Num, Select } from "./fields.js";

/** The groups. */
export function TrainGroups() {
  return html`
    <${Group} group="extra" i18n="group.extra">
      <${Num} name="logging_steps" i18n="arg.logging_steps" min="1" />
      <${Num} name="save_steps" i18n="arg.save_steps" min="1" />
      <${Num} name="eval_steps" i18n="arg.eval_steps" min="1" placeholder="save_steps" />
      <${Num} name="warmup_steps" i18n="arg.warmup_steps" min="0" />
      <${Num} name="warmup_ratio" i18n="arg.warmup_ratio" min="0" step="0.01" />
      <${Select} name="optim" i18n="arg.optim" />
      <${Check} name="packing" i18n="arg.packing" />
      <${Check} name="neat_packing" i18n="arg.neat_packing" />
      <${Check} name="train_on_prompt" i18n="arg.train_on_prompt" />
      <${Check} name="mask_history" i18n="arg.mask_history" />
      <${Check} name="plot_loss" i18n="arg.plot_loss" />
      </${Group}>
      <${Group} group="precision" i18n="group.precision">
        <${Check} name="bf16" i18n="arg.bf16" />
        <${Check} name="fp16" i18n="arg.fp16" />
        </${Group}>
        <${Group} group="lora" i18n="group.lora">
          <${Num} name="lora_rank" i18n="arg.lora_rank" min="1" />
          <${Num} name="lora_alpha" i18n="arg.lora_alpha" min="0" placeholder="lora_rank × 2" />
          <${Num} name="lora_dropout" i18n="arg.lora_dropout" min="0" step="0.01" />
          <${Num} name="loraplus_lr_ratio" i18n="arg.loraplus_lr_ratio" min="0" />
          <${Input} name="lora_target" i18n="arg.lora_target" placeholder="all" />
          <${Input} name="additional_target" i18n="arg.additional_target" />
          <${Check} name="use_rslora" i18n="arg.use_rslora" />
          <${Check} name="use_dora" i18n="arg.use_dora" />
          <${Check} name="pissa_init" i18n="arg.pissa_init" />
          <${Check} name="create_new_adapter" i18n="arg.create_new_adapter" />
          </${Group}>
          <${Group} group="rlhf" i18n="group.rlhf">
            <${Num} name="pref_beta" i18n="arg.pref_beta" min="0" step="0.01" />
            <${Num} name="pref_ftx" i18n="arg.pref_ftx" min="0" step="0.01" />
            <${Select} name="pref_loss" i18n="arg.pref_loss" />
            <${Input} name="ref_model" i18n="arg.ref_model" />
            <${Input} name="reward_model" i18n="arg.reward_model" />
            </${Group}>
            <${Group} group="freeze" i18n="group.freeze">
              <${Num} name="freeze_trainable_layers" i18n="arg.freeze_trainable_layers" step="1" />
              <${Input} name="freeze_trainable_modules" i18n="arg.freeze_trainable_modules" />
              <${Input} name="freeze_extra_modules" i18n="arg.freeze_extra_modules" />
              </${Group}>
              <${Group} group="galore" i18n="group.galore">
                <${Check} name="use_galore" i18n="arg.use_galore" />
                <${Num} name="galore_rank" i18n="arg.galore_rank" min="1" />
                <${Num} name="galore_update_interval" i18n="arg.galore_update_interval" min="1" />
                <${Num} name="galore_scale" i18n="arg.galore_scale" min="0" step="0.01" />
                <${Input} name="galore_target" i18n="arg.galore_target" />
                <${Select} name="galore_proj_type" i18n="arg.galore_proj_type" />
                </${Group}>
                <${Group} group="badam" i18n="group.badam">
                  <${Check} name="use_badam" i18n="arg.use_badam" />
                  <${Select} name="badam_mode" i18n="arg.badam_mode" />
                  <${Select} name="badam_switch_mode" i18n="arg.badam_switch_mode" />
                  <${Num} name="badam_switch_interval" i18n="arg.badam_switch_interval" min="1" />
                  <${Num} name="badam_start_block" i18n="arg.badam_start_block" min="0" />
                  </${Group}>
                  <${Group} group="quantization" i18n="group.quantization">
                    <${Select} name="quantization_method" i18n="arg.quantization_method" />
                    <${Select} name="quantization_type" i18n="arg.quantization_type" />
                    <${Check} name="double_quantization" i18n="arg.double_quantization" />
                    </${Group}>
  `;
}
