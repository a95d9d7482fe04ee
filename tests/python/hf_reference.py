#!/usr/bin/env python3
"""An independent reference forward pass of an exported Hugging Face checkpoint.

Reads only what `btx export` wrote (config.json and model.safetensors, or the shards named by
model.safetensors.index.json) and computes the logits the way Hugging Face's LlamaForCausalLM and
MixtralForCausalLM define them (transformers' modeling_llama.py / modeling_mixtral.py): RMSNorm,
rotary embedding on the two halves of each head (rotate_half), grouped-query attention with a
causal mask, SwiGLU MLP; for Mixtral a softmax router whose top-k weights are renormalised to sum
to one. Nothing of btx is imported: it needs only Python and torch (Debian's python3-torch).

usage: hf_reference.py EXPORT_DIR TOKENS_JSON OUT_BIN
  TOKENS_JSON: [[id, ...], ...] (B sequences of equal length T)
  OUT_BIN: the logits (B, T, V) as little-endian float32, row-major
"""
import json
import math
import os
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).to(torch.float32)
    return out


def read_weights(folder):
    index = os.path.join(folder, "model.safetensors.index.json")
    if not os.path.exists(index):
        return read_safetensors(os.path.join(folder, "model.safetensors"))
    weights = {}
    weight_map = json.load(open(index))["weight_map"]
    for shard in sorted(set(weight_map.values())):
        weights.update(read_safetensors(os.path.join(folder, shard)))
    assert set(weights) == set(weight_map), "index and shards disagree"
    return weights


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return weight * (x * torch.rsqrt(variance + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(T, dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def attention(x, w, prefix, cfg, cos, sin):
    B, T, C = x.shape
    H, G = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim", C // H)
    q = (x @ w[prefix + "q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
    k = (x @ w[prefix + "k_proj.weight"].T).view(B, T, G, D).transpose(1, 2)
    v = (x @ w[prefix + "v_proj.weight"].T).view(B, T, G, D).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(H // G, dim=1)  # repeat_kv
    v = v.repeat_interleave(H // G, dim=1)
    scores = q @ k.transpose(2, 3) / math.sqrt(D)
    mask = torch.full((T, T), float("-inf")).triu(1)
    probs = torch.softmax(scores + mask, dim=-1, dtype=torch.float32)
    out = (probs @ v).transpose(1, 2).reshape(B, T, H * D)
    return out @ w[prefix + "o_proj.weight"].T


def swiglu(x, w_gate, w_up, w_down):
    return (torch.nn.functional.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def mixtral_moe(x, w, prefix, cfg):
    B, T, C = x.shape
    h = x.reshape(-1, C)
    logits = h @ w[prefix + "gate.weight"].T
    weights = torch.softmax(logits, dim=1, dtype=torch.float32)
    weights, chosen = torch.topk(weights, cfg["num_experts_per_tok"], dim=-1)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(h)
    for e in range(cfg["num_local_experts"]):
        rows, slot = torch.where(chosen == e)
        if rows.numel() == 0:
            continue
        p = f"{prefix}experts.{e}."
        y = swiglu(h[rows], w[p + "w1.weight"], w[p + "w3.weight"], w[p + "w2.weight"])
        out.index_add_(0, rows, y * weights[rows, slot, None])
    return out.view(B, T, C)


def forward(folder, tokens):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    arch = cfg["architectures"][0]
    assert arch in ("LlamaForCausalLM", "MixtralForCausalLM"), arch
    w = read_weights(folder)
    ids = torch.tensor(tokens, dtype=torch.int64)
    x = w["model.embed_tokens.weight"][ids]
    T = ids.shape[1]
    D = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    cos, sin = rotary(T, D, cfg["rope_theta"])
    eps = cfg["rms_norm_eps"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), w,
                          p + "self_attn.", cfg, cos, sin)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if arch == "MixtralForCausalLM":
            x = x + mixtral_moe(h, w, p + "block_sparse_moe.", cfg)
        else:
            x = x + swiglu(h, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"],
                           w[p + "mlp.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def main():
    folder, tokens_file, out_file = sys.argv[1:4]
    torch.set_grad_enabled(False)
    logits = forward(folder, json.load(open(tokens_file))).contiguous()
    with open(out_file, "wb") as f:
        f.write(logits.numpy().astype("<f4").tobytes())
    print(json.dumps({"shape": list(logits.shape)}))


if __name__ == "__main__":
    main()
