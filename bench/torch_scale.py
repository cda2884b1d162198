"""PyTorch + PEFT side of bench/scale.ts, a worker that stays up between rounds.

Usage: torch_scale.py '<json>' where the JSON holds `dir` (a model folder), `method` ("lora": PEFT LoRA r 8, alpha 16,
every linear layer; "qlora": the same over a 4-bit NF4 base with double quantization through bitsandbytes), the batch
(`ids`, `labels`: [batch][seq] lists, the labels unshifted as transformers takes them) and optionally `threads`.
Loads the folder with `from_pretrained` in float32 (the dtype Whetstone's CPU executor computes in), measuring the
load's peak resident memory (ru_maxrss, and VmHWM reset through /proc/self/clear_refs before the load), prints one
ready line (or `{"absent": reason}` when bitsandbytes is missing for qlora), then for every JSON line on stdin
({"warmup": w, "steps": n}) runs w untimed and n timed optimizer steps (forward, backward, clipping to norm 1, AdamW)
and prints {"seconds": [...], "loss": last, "peak_rss_bytes": VmHWM}. The ready line carries the first step's loss
(the base model's, since LoRA's B starts at zero), to compare with Whetstone's. Exits at the end of stdin."""
import json, os, sys, time


def status():
    with open("/proc/self/status") as f:
        kv = dict(line.split(":", 1) for line in f if ":" in line)
    return {k: int(kv[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


cfg = json.loads(sys.argv[1])
method = cfg["method"]
if method not in ("lora", "qlora"):
    raise SystemExit(f"method: expected lora or qlora, got {method!r}")
if method == "qlora":
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        print(json.dumps({"absent": f"bitsandbytes is not installed ({e})"}), flush=True)
        raise SystemExit(0)

import torch
import transformers
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

transformers.utils.logging.disable_progress_bar()

if cfg.get("threads"):
    torch.set_num_threads(cfg["threads"])
torch.manual_seed(0)
started = status()["VmRSS"]
peak_reset = reset_peak()
t0 = time.perf_counter()
kw = {}
if method == "qlora":
    from transformers import BitsAndBytesConfig
    kw["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_use_double_quant=True,
                                                   bnb_4bit_compute_dtype=torch.float32)
model = AutoModelForCausalLM.from_pretrained(cfg["dir"], dtype=torch.float32, attn_implementation="sdpa", **kw)
load_s = time.perf_counter() - t0
loaded = status()
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
model.train()
ids = torch.tensor(cfg["ids"], dtype=torch.long)
labels = torch.tensor(cfg["labels"], dtype=torch.long)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)


def step():
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


t0 = time.perf_counter()
first_loss = step()
first_step_s = time.perf_counter() - t0
print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "trainable": sum(p.numel() for p in trainable), "peak_reset": peak_reset,
                  "load_s": load_s, "load_peak_bytes": loaded["VmHWM"] - started,
                  "load_held_bytes": loaded["VmRSS"] - started, "first_step_s": first_step_s,
                  "first_loss": first_loss, "allocated_bytes": status()["VmRSS"] - started,
                  "peak_rss_bytes": status()["VmHWM"]}), flush=True)
for line in sys.stdin:
    if not line.strip():
        continue
    req = json.loads(line)
    loss = float("nan")
    for _ in range(req.get("warmup", 1)):
        loss = step()
    ts = []
    for _ in range(req["steps"]):
        t0 = time.perf_counter()
        loss = step()
        ts.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": ts, "loss": None if loss != loss else loss, "peak_rss_bytes": status()["VmHWM"]}),
          flush=True)
