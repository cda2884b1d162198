"""PyTorch + PEFT baseline for bench/train.ts, a worker that stays up between rounds.

Usage: torch_train.py '<json>' where the JSON holds the model config (vocab, hidden, intermediate, layers, heads,
kvHeads), the method (lora: r 8, alpha 16, all linear layers; freeze: the last 2 layers train; full), and the batch
(`ids`, `labels`: [batch][seq] lists, the labels unshifted as transformers takes them) and optionally `threads`. Builds a random Llama of that
config, prints one ready line, then for every JSON line on stdin ({"warmup": w, "steps": n}) runs w untimed and n
timed optimizer steps (forward, backward, clipping to norm 1, AdamW) and prints {"seconds": [...]}. Exits at the end
of stdin."""
import json, sys, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

cfg = json.loads(sys.argv[1])
if cfg.get("threads"):
    torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(
    vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
    num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kvHeads"],
    max_position_embeddings=4096, rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="sdpa"))
method = cfg["method"]
if method == "lora":
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
elif method == "freeze":
    last = {f"layers.{i}." for i in range(cfg["layers"] - 2, cfg["layers"])}
    for name, p in model.named_parameters():
        p.requires_grad_(any(s in name for s in last))
elif method != "full":
    raise SystemExit(f"method: expected lora, freeze or full, got {method!r}")
model.train()
ids = torch.tensor(cfg["ids"], dtype=torch.long)
labels = torch.tensor(cfg["labels"], dtype=torch.long)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)


def step():
    model(input_ids=ids, labels=labels).loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)


print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "trainable": sum(p.numel() for p in trainable)}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    for _ in range(req.get("warmup", 1)):
        step()
    ts = []
    for _ in range(req["steps"]):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": ts}), flush=True)
