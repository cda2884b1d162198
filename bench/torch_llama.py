"""PyTorch baseline for bench/model.ts: a random Llama of the same config, forward (with loss) and
forward+backward tokens/s on this CPU. Prints one JSON object. Usage: torch_llama.py '<json config>'"""
import json, sys, time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

cfg = json.loads(sys.argv[1])
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(
    vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
    num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kvHeads"],
    max_position_embeddings=4096, attn_implementation="sdpa"))
B, L = cfg["batch"], cfg["seq"]
ids = torch.randint(0, cfg["vocab"], (B, L))


def timed(fn, reps=5):
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


def fwd_bwd():
    model.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()


print(json.dumps({
    "torch": torch.__version__, "threads": torch.get_num_threads(),
    "forward_s": timed(fwd), "forward_backward_s": timed(fwd_bwd),
}))
