"""PyTorch + PEFT side of bench/e2e.ts: LLaMA-Factory's training loop reduced to what costs time, over the padded
batches Whetstone trains on.

Usage: torch_e2e.py '<json>' with `model` (a model folder), `batches` (a JSON file: a list of {input_ids,
attention_mask, labels}, each [batch][length], padded as Whetstone pads them), `method` (lora: r 8, alpha 16, all
linear layers, as LF's lora_target all; full), `lr`, `out` (a folder for the final save) and optionally `threads`,
`checkpoint` (gradient checkpointing as LF enables it by default, unless the YAML sets disable_gradient_checkpointing:
each decoder layer recomputed in the backward, reentrant) and `sample` ({prompt, max_new_tokens, min_new_tokens?,
stop}: the held-out answer `deno task train` ends an SFT run with).
Loads the model in f32, trains one step a batch (forward, backward, clipping to norm 1, AdamW), saves the adapter or
the model as LF does at the end, answers the sample prompt greedily, and prints one JSON object: load_s, train_s (the
loop), save_s, sample_s, sampled (the answer's tokens), tokens (real tokens, as Whetstone counts them), steps, step_s
(each step), loss, torch, threads, checkpoint."""
import json, sys, time

t_start = time.perf_counter()
import torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

cfg = json.loads(sys.argv[1])
if cfg.get("threads"):
    torch.set_num_threads(cfg["threads"])
torch.manual_seed(42)
model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=torch.float32, attn_implementation="sdpa")
if cfg.get("checkpoint"):
    # LF's prepare_model_for_training (model_utils/checkpointing.py): use_reentrant_gc defaults to True, use_cache off;
    # its checkpoint function marks the hidden states entering a trainable layer as requiring grad, which
    # enable_input_require_grads does for every layer through the embedding's output.
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.config.use_cache = False
    model.enable_input_require_grads()
if cfg["method"] == "lora":
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
elif cfg["method"] != "full":
    raise SystemExit(f"method: expected lora or full, got {cfg['method']!r}")
model.train()
batches = json.load(open(cfg["batches"]))
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=cfg["lr"], weight_decay=0.0)
t_loaded = time.perf_counter()

tokens, step_s = 0, []
for b in batches:
    t0 = time.perf_counter()
    ids = torch.tensor(b["input_ids"])
    mask = torch.tensor(b["attention_mask"])
    out = model(input_ids=ids, attention_mask=mask, labels=torch.tensor(b["labels"]))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    tokens += int(mask.sum())
    step_s.append(time.perf_counter() - t0)
t_trained = time.perf_counter()
model.save_pretrained(cfg["out"])
t_saved = time.perf_counter()
sample = cfg.get("sample")
if sample:
    model.eval()
    with torch.no_grad():
        answer = model.generate(input_ids=torch.tensor([sample["prompt"]]), max_new_tokens=sample["max_new_tokens"],
                                min_new_tokens=sample.get("min_new_tokens", 0), do_sample=False,
                                eos_token_id=sample["stop"], pad_token_id=sample["stop"][0])
    sampled = answer.shape[1] - len(sample["prompt"])
else:
    sampled = 0
t_sampled = time.perf_counter()
print(json.dumps({
    "load_s": t_loaded - t_start, "train_s": t_trained - t_loaded, "save_s": t_saved - t_trained,
    "sample_s": t_sampled - t_saved, "sampled": sampled,
    "tokens": tokens, "steps": len(batches), "step_s": step_s, "loss": float(out.loss.detach()),
    "torch": torch.__version__, "threads": torch.get_num_threads(), "checkpoint": bool(cfg.get("checkpoint")),
}))
