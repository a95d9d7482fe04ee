"""Training tokens/s of the reference Llama in PyTorch's Python front end (eager), the same
model and step as bench/train_throughput.cpp and bench/gpu_bench.cpp, on --device (cpu, cuda),
under bf16 autocast with --bf16. Prints one JSON line."""
import argparse
import json
import sys
import time
import os

import torch

sys.path.insert(0, os.path.dirname(__file__))
from llama_ref import LlamaRef  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--hidden", type=int, default=256)
p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--vocab", type=int, default=4096)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--kv-heads", type=int, default=0)  # 0: as many as --heads
p.add_argument("--device", default="cpu")
p.add_argument("--bf16", action="store_true")
a = p.parse_args()
device = torch.device(a.device)
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
cfg = dict(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=int(a.hidden * 8 / 3 // 32 * 32),
           num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads or a.heads,
           rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
model = LlamaRef(cfg).to(device)
decay = [p for p in model.parameters() if p.dim() >= 2]
no_decay = [p for p in model.parameters() if p.dim() < 2]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
batch = torch.randint(0, a.vocab, (a.batch, a.seq + 1)).to(device)


def step():
    opt.zero_grad(set_to_none=False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
        logits = model(batch[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, a.vocab),
                                             batch[:, 1:].reshape(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


for _ in range(a.warmup):
    step()
t0 = time.perf_counter()
for _ in range(a.steps):
    step()
dt = time.perf_counter() - t0
print(json.dumps({"impl": "python", "device": str(device), "bf16": a.bf16, "tokens_per_s": a.batch * a.seq * a.steps / dt,
                  "step_ms": 1000 * dt / a.steps, "threads": torch.get_num_threads(),
                  "params": sum(p.numel() for p in model.parameters())}))
