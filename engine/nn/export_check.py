"""Loads a model folder exported by Whetstone with transformers and prints its logits: the interop check of
engine/nn/export_test.ts (an exported folder must load in transformers and compute the same thing).

usage: export_check.py MODEL_DIR IDS_JSON
Prints {"shape": [B, L, V], "logits": [...]} (float32, eager attention, eval mode, no attention mask) as JSON.
"""

import json
import sys

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    path, ids = sys.argv[1:]
    torch.set_num_threads(1)
    ids = torch.tensor(json.loads(ids), dtype=torch.int64)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(input_ids=ids, use_cache=False).logits.float()
    print(json.dumps({"shape": list(logits.shape), "logits": logits.flatten().tolist()}))


if __name__ == "__main__":
    main()
