"""Loads PEFT adapters with PeftModel.from_pretrained and writes their logits: the interop check of
engine/io/peft_test.ts (adapters written by Whetstone must load in PEFT and compute the same thing).

usage: peft_check.py OUT.safetensors IDS_JSON BASE_DIR::ADAPTER_DIR ...
Writes `logits.<i>` F32 [B, L, V] for the i-th pair: the base model (float32, eager attention) with the adapter,
in eval mode, on IDS_JSON (a list of equal-length rows, no attention mask).
"""

import json
import sys

import torch
from peft import PeftModel
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM


def main() -> None:
    out, ids, *pairs = sys.argv[1:]
    torch.set_num_threads(1)
    ids = torch.tensor(json.loads(ids), dtype=torch.int64)
    res = {}
    for i, pair in enumerate(pairs):
        base, adapter = pair.split("::")
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
        pm = PeftModel.from_pretrained(model, adapter).eval()
        with torch.no_grad():
            res[f"logits.{i}"] = pm(input_ids=ids, use_cache=False).logits.float().contiguous()
    save_file(res, out)


if __name__ == "__main__":
    main()
