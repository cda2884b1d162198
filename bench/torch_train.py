"""PyTorch + PEFT baseline for bench/train.ts: a training step (forward, backward, AdamW) of a random Llama of
the same config, LoRA (r=8, all linear layers) and full, tokens/s on this CPU. Prints one JSON object."""
import json, sys, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from peft import LoraConfig, get_peft_model

cfg = json.loads(sys.argv[1])
torch.manual_seed(0)


def make():
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kvHeads"],
        max_position_embeddings=4096, attn_implementation="sdpa"))


B, L = cfg["batch"], cfg["seq"]
ids = torch.randint(0, cfg["vocab"], (B, L))


def steps_per_s(model, reps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()

    step()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


lora = get_peft_model(make(), LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "lora_s": steps_per_s(lora)}
out["full_s"] = steps_per_s(make())
print(json.dumps(out))
