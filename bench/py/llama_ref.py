"""An independent Llama-style reference in PyTorch's Python front end, written from the Hugging
Face Llama definition (RMSNorm, RoPE on the two halves of the head dimension, grouped-query
attention, SwiGLU), with the same parameter names as btx. Used by the benchmarks to time the same
model in Python, and by parity tests to check btx's logits from its files alone."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return self.weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rope_tables(T, D, base, device=None):
    inv_freq = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    freqs = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos().float().to(device), emb.sin().float().to(device)


def apply_rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h, self.g = c["num_attention_heads"], c["num_key_value_heads"]
        self.d = c["hidden_size"] // self.h
        C = c["hidden_size"]
        self.q_proj = nn.Linear(C, self.h * self.d, bias=False)
        self.k_proj = nn.Linear(C, self.g * self.d, bias=False)
        self.v_proj = nn.Linear(C, self.g * self.d, bias=False)
        self.o_proj = nn.Linear(self.h * self.d, C, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.h, self.d).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.g, self.d).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.g, self.d).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.g != self.h:
            k = k.repeat_interleave(self.h // self.g, 1)
            v = v.repeat_interleave(self.h // self.g, 1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.d)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, self.h * self.d))


class Mlp(nn.Module):
    def __init__(self, C, F_):
        super().__init__()
        self.gate_proj = nn.Linear(C, F_, bias=False)
        self.up_proj = nn.Linear(C, F_, bias=False)
        self.down_proj = nn.Linear(F_, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(C, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(C, eps)
        self.mlp = Mlp(C, c["intermediate_size"])

    def forward(self, x, cos, sin):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))


class Inner(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class LlamaRef(nn.Module):
    """config: a dict with Hugging Face Llama keys (a config.json)."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = Inner(c)
        self.tied = c.get("tie_word_embeddings", True)
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)

    def forward(self, ids):
        T = ids.shape[1]
        cos, sin = rope_tables(T, self.c["hidden_size"] // self.c["num_attention_heads"],
                               self.c.get("rope_theta", 10000.0), ids.device)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t() if self.tied else self.lm_head(x)
