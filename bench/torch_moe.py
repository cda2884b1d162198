"""PyTorch baseline for bench/model_moe.ts: a random mixture-of-experts model of the same config.json (transformers 5,
fused experts, eager attention as the MoE bench rows of Whetstone use the same math), forward (with loss),
forward+backward of every parameter, and forward+backward of a PEFT LoRA adapter on every linear plus the routed
experts' fused parameters (target_parameters), tokens timed on this CPU. Prints one JSON object.
Usage: torch_moe.py '<json: {"config": {...config.json keys}, "batch": B, "seq": L, "rank": r}>'"""
import json
import sys
import time

import peft
import torch
import transformers

arg = json.loads(sys.argv[1])
torch.manual_seed(0)
cfg = transformers.AutoConfig.for_model(**arg["config"])
model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
B, L = arg["batch"], arg["seq"]
ids = torch.randint(0, cfg.vocab_size, (B, L))


def timed(fn, reps=3):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def fwd():
    with torch.no_grad():
        model(input_ids=ids, labels=ids).loss.item()


def fwd_bwd(m):
    def go():
        m.zero_grad(set_to_none=True)
        m(input_ids=ids, labels=ids).loss.backward()
    return go


out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "forward_s": timed(fwd),
       "forward_backward_s": timed(fwd_bwd(model))}
r = arg["rank"]
lora = peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear",
                       target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], lora_dropout=0.0)
pm = peft.get_peft_model(model, lora)
for n, p in pm.named_parameters():  # B ≠ 0, so the adapter is not a no-op
    if "lora_B" in n:
        torch.nn.init.normal_(p, std=0.01)
out["lora_experts_forward_backward_s"] = timed(fwd_bwd(pm))
print(json.dumps(out))
