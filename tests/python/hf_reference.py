#!/usr/bin/env python3
"""An independent reference forward pass of an exported Hugging Face checkpoint.

Reads only a checkpoint folder (config.json and model.safetensors, or the shards named by
model.safetensors.index.json) and computes the logits the way Hugging Face's classes define them
(transformers' modeling_llama.py, modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py,
modeling_mixtral.py, modeling_qwen3_moe.py): RMSNorm, rotary embedding on the two halves of each
head (rotate_half) with rope_scaling "linear" or "llama3" (_compute_llama3_parameters), an
explicit head_dim, grouped-query attention with a causal mask, q/k/v(/o) biases where the
weights have them (Qwen2, attention_bias), Qwen3's per-head q_norm / k_norm before the rotation,
SwiGLU MLP; for Mixtral and Qwen3-MoE a softmax router whose top-k weights are renormalised to
sum to one (Qwen3-MoE: when norm_topk_prob). Nothing of btx is imported: it needs only Python and
torch (Debian's python3-torch).

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


def inv_freq_of(cfg, dim):
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv_freq
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv_freq / rs["factor"]
    assert kind == "llama3", kind
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rotary(T, dim, cfg):
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq_of(cfg, dim))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def linear(x, w, name):
    y = x @ w[name + ".weight"].T
    return y + w[name + ".bias"] if name + ".bias" in w else y


def attention(x, w, prefix, cfg, cos, sin):
    B, T, C = x.shape
    H, G = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    eps = cfg["rms_norm_eps"]
    q = linear(x, w, prefix + "q_proj").view(B, T, H, D)
    k = linear(x, w, prefix + "k_proj").view(B, T, G, D)
    if prefix + "q_norm.weight" in w:  # Qwen3
        q = rms_norm(q, w[prefix + "q_norm.weight"], eps)
        k = rms_norm(k, w[prefix + "k_norm.weight"], eps)
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    v = linear(x, w, prefix + "v_proj").view(B, T, G, D).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(H // G, dim=1)  # repeat_kv
    v = v.repeat_interleave(H // G, dim=1)
    scores = q @ k.transpose(2, 3) / math.sqrt(D)
    mask = torch.full((T, T), float("-inf")).triu(1)
    window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral", "mixtral") else None
    if window:  # Mistral: position t sees t - window + 1 .. t
        mask = mask + torch.full((T, T), float("-inf")).tril(-window)
    probs = torch.softmax(scores + mask, dim=-1, dtype=torch.float32)
    out = (probs @ v).transpose(1, 2).reshape(B, T, H * D)
    return linear(out, w, prefix + "o_proj")


def swiglu(x, w_gate, w_up, w_down):
    return (torch.nn.functional.silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def sparse_moe(x, w, prefix, cfg, qwen):
    B, T, C = x.shape
    h = x.reshape(-1, C)
    logits = h @ w[prefix + "gate.weight"].T
    weights = torch.softmax(logits, dim=1, dtype=torch.float32)
    weights, chosen = torch.topk(weights, cfg["num_experts_per_tok"], dim=-1)
    if not qwen or cfg.get("norm_topk_prob"):
        weights = weights / weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(h)
    for e in range(cfg["num_experts"] if qwen else cfg["num_local_experts"]):
        rows, slot = torch.where(chosen == e)
        if rows.numel() == 0:
            continue
        p = f"{prefix}experts.{e}."
        if qwen:
            y = swiglu(h[rows], w[p + "gate_proj.weight"], w[p + "up_proj.weight"],
                       w[p + "down_proj.weight"])
        else:
            y = swiglu(h[rows], w[p + "w1.weight"], w[p + "w3.weight"], w[p + "w2.weight"])
        out.index_add_(0, rows, y * weights[rows, slot, None])
    return out.view(B, T, C)


ARCHITECTURES = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3", "MixtralForCausalLM": "mixtral",
    "Qwen3MoeForCausalLM": "qwen3_moe",
}


def forward(folder, tokens):
    cfg = json.load(open(os.path.join(folder, "config.json")))
    arch = cfg["architectures"][0]
    assert ARCHITECTURES.get(arch) == cfg["model_type"], (arch, cfg["model_type"])
    w = read_weights(folder)
    ids = torch.tensor(tokens, dtype=torch.int64)
    x = w["model.embed_tokens.weight"][ids]
    T = ids.shape[1]
    D = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    cos, sin = rotary(T, D, cfg)
    eps = cfg["rms_norm_eps"]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = x + attention(rms_norm(x, w[p + "input_layernorm.weight"], eps), w,
                          p + "self_attn.", cfg, cos, sin)
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if arch == "MixtralForCausalLM":
            x = x + sparse_moe(h, w, p + "block_sparse_moe.", cfg, qwen=False)
        elif arch == "Qwen3MoeForCausalLM":
            x = x + sparse_moe(h, w, p + "mlp.", cfg, qwen=True)
        else:
            x = x + swiglu(h, w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"],
                           w[p + "mlp.down_proj.weight"])
    x = rms_norm(x, w["model.norm.weight"], eps)
    tied = cfg.get("tie_word_embeddings", False)  # HF's PretrainedConfig default
    head = w["model.embed_tokens.weight"] if tied else w["lm_head.weight"]
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
