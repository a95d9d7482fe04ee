#include "btx/hf/gguf_export.h"

#include "btx/hf/hf.h"
#include "btx/io/gguf.h"
#include "btx/io/safetensors.h"
#include "btx/model/layers.h"
#include "btx/run/model_folder.h"
#include "btx/util/error.h"

namespace btx {

namespace {

struct FileType {
  GgufType type;
  uint32_t file_type;  // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_BF16
};

FileType parse_gguf_dtype(const std::string& name) {
  if (name == "f32") return {GgufType::kF32, 0};
  if (name == "f16") return {GgufType::kF16, 1};
  if (name == "q8_0") return {GgufType::kQ8_0, 7};
  if (name == "bf16") return {GgufType::kBF16, 32};
  fail("--dtype '{}': a GGUF is written in f32, f16, bf16 or q8_0", name);
}

// HF's rotary layout (dimension i of a head pairs with i + D/2) to GGML's (2i with 2i+1): the
// rows of each head of a Q or K projection [heads * D, C] (or its bias [heads * D]) reordered, as
// llama.cpp's converter does for the "llama" architecture.
torch::Tensor permute_rotary(const torch::Tensor& w, int64_t heads) {
  const int64_t D = w.size(0) / heads, cols = w.dim() == 2 ? w.size(1) : 1;
  return w.reshape({heads, 2, D / 2, cols}).transpose(1, 2).reshape(w.sizes());
}

// One GGUF tensor and how it is made from the checkpoint.
struct Source {
  GgufTensorSpec spec;
  std::function<torch::Tensor()> make;
};

// llama.cpp's architecture for a model: "llama" (llama and mistral bases, dense or MoE; rotary
// in GGML's pair layout, so Q and K are permuted), "qwen2", "qwen3", "qwen3moe" (NeoX rotary:
// HF's layout as it is).
struct GgmlArch {
  std::string name;
  bool permute;
};

GgmlArch ggml_arch(const ModelConfig& c, const std::string& what) {
  switch (c.base_model_type) {
    case BaseModelType::kLlama:
    case BaseModelType::kMistral:
      return {"llama", true};
    case BaseModelType::kQwen2:
      return {"qwen2", false};  // a Qwen2 MoE was refused by hf_config
    case BaseModelType::kQwen3:
      BTX_CHECK(!c.attention_bias,
                "{}: a Qwen3 model with attention_bias, which llama.cpp's qwen3 does not compute",
                what);
      return {c.is_moe() ? "qwen3moe" : "qwen3", false};
  }
  fail("{}: no GGML architecture", what);
}

// llama.cpp's name for a tokenizer.json's pre-tokenizer (tokenizer.ggml.pre), found from its
// steps: llama.cpp splits text with its own copy of each known model's regular expressions, so a
// pre-tokenizer it has no copy of cannot be written (its ids would differ).
std::string ggml_pre_tokenizer(const Tokenizer& tok, const std::string& what) {
  static const std::string kLlama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  static const std::string kQwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::string gpt2 = "ByteLevel:gpt2";
  static const std::vector<std::pair<std::vector<std::string>, std::string>> kKnown = {
      {{"Split:" + kLlama3, "ByteLevel"}, "llama-bpe"},
      {{"Split:" + kQwen2, "ByteLevel"}, "qwen2"},
      {{"Digits:individual", gpt2}, "smollm"},
      {{gpt2}, "gpt2"},
  };
  const auto steps = tok.pre_tokenizer_steps();
  for (const auto& [known, name] : kKnown) {
    if (steps == known) return name;
  }
  fail(
      "{}: its tokenizer.json splits text with [{}], which matches none of the pre-tokenizers "
      "llama.cpp implements that btx knows (Llama 3, Qwen2/3, SmolLM, GPT-2): llama.cpp's ids "
      "would differ, so no GGUF is written",
      what, fmt::join(steps, "; "));
}

}  // namespace

nlohmann::json export_gguf(const GgufExportOptions& o) {
  const FileType ft = parse_gguf_dtype(o.dtype);
  const ExportSource src = open_export_source(o.model, o.tokenizer);
  const ModelConfig& c = src.config;
  const Tokenizer& tok = src.tokenizer;
  const std::string what = o.model.string();
  BTX_CHECK(!fs::exists(o.out),
            "{} exists: export writes a new file (remove it or pick another --out)",
            o.out.string());
  BTX_CHECK(c.head_dim() % 2 == 0, "{}: head_dim {} is odd, which rotary embeddings do not allow",
            what, c.head_dim());
  const GgmlArch arch = ggml_arch(c, what);
  const std::string pre = tok.is_hf() ? ggml_pre_tokenizer(tok, what) : "";
  BTX_CHECK(!tok.is_hf() || tok.byte_level(),
            "{}: its tokenizer.json is a sentencepiece-style BPE, which a GGUF holds as "
            "sentencepiece pieces with scores: export with the model's tokenizer.model "
            "(--tokenizer) instead",
            what);
  const auto reader = std::make_shared<SafetensorsReader>(o.model / "model.safetensors");
  auto read = [reader](const std::string& name) { return reader->read(name); };

  // Tensors: GGUF's names, llama.cpp's order (embedding, layers, final norm, output).
  std::vector<Source> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool matrix,
                 std::function<torch::Tensor()> make) {
    tensors.push_back(
        {{name, std::move(shape), matrix ? ft.type : GgufType::kF32}, std::move(make)});
  };
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const int64_t H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim();
  const int64_t E = c.num_local_experts;
  // Q and K (weights and biases) in GGML's rotary layout where the architecture wants it.
  auto rotary = [=](const std::string& name, int64_t heads) {
    return [=] { return arch.permute ? permute_rotary(read(name), heads) : read(name); };
  };
  add("token_embd.weight", {V, C}, true, [=] { return read("model.embed_tokens.weight"); });
  if (c.rope_scaling_type == "llama3") {
    // llama.cpp divides each rotary frequency by its factor: plain / scaled frequencies.
    add("rope_freqs.weight", {D / 2}, false, [=] {
      RopeSpec plain = RopeSpec::of(c);
      plain.scaling.clear();
      return (plain.inv_freq() / RopeSpec::of(c).inv_freq()).to(torch::kFloat32);
    });
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string hf = fmt::format("model.layers.{}.", l), gg = fmt::format("blk.{}.", l);
    const std::string at = hf + "self_attn.";
    add(gg + "attn_norm.weight", {C}, false, [=] { return read(hf + "input_layernorm.weight"); });
    add(gg + "attn_q.weight", {H * D, C}, true, rotary(at + "q_proj.weight", H));
    add(gg + "attn_k.weight", {KV * D, C}, true, rotary(at + "k_proj.weight", KV));
    add(gg + "attn_v.weight", {KV * D, C}, true, [=] { return read(at + "v_proj.weight"); });
    add(gg + "attn_output.weight", {C, H * D}, true, [=] { return read(at + "o_proj.weight"); });
    if (c.qkv_bias()) {
      add(gg + "attn_q.bias", {H * D}, false, rotary(at + "q_proj.bias", H));
      add(gg + "attn_k.bias", {KV * D}, false, rotary(at + "k_proj.bias", KV));
      add(gg + "attn_v.bias", {KV * D}, false, [=] { return read(at + "v_proj.bias"); });
    }
    if (c.o_bias()) {
      add(gg + "attn_output.bias", {C}, false, [=] { return read(at + "o_proj.bias"); });
    }
    if (c.qk_norm()) {
      add(gg + "attn_q_norm.weight", {D}, false, [=] { return read(at + "q_norm.weight"); });
      add(gg + "attn_k_norm.weight", {D}, false, [=] { return read(at + "k_norm.weight"); });
    }
    add(gg + "ffn_norm.weight", {C}, false,
        [=] { return read(hf + "post_attention_layernorm.weight"); });
    if (!c.is_moe()) {
      add(gg + "ffn_gate.weight", {F, C}, true, [=] { return read(hf + "mlp.gate_proj.weight"); });
      add(gg + "ffn_up.weight", {F, C}, true, [=] { return read(hf + "mlp.up_proj.weight"); });
      add(gg + "ffn_down.weight", {C, F}, true, [=] { return read(hf + "mlp.down_proj.weight"); });
      continue;
    }
    const std::string moe = hf + "block_sparse_moe.";
    // The router stays F32 (llama.cpp's converter keeps it so: its logits pick the experts).
    add(gg + "ffn_gate_inp.weight", {E, C}, false, [=] { return read(moe + "gate.weight"); });
    auto stacked = [=](const std::string& w) {
      return [=] {
        std::vector<torch::Tensor> parts;
        for (int64_t e = 0; e < E; ++e) {
          parts.push_back(read(fmt::format("{}experts.{}.{}.weight", moe, e, w)));
        }
        return torch::stack(parts);
      };
    };
    add(gg + "ffn_gate_exps.weight", {E, F, C}, true, stacked("w1"));
    add(gg + "ffn_down_exps.weight", {E, C, F}, true, stacked("w2"));
    add(gg + "ffn_up_exps.weight", {E, F, C}, true, stacked("w3"));
  }
  add("output_norm.weight", {C}, false, [=] { return read("model.norm.weight"); });
  if (!c.tie_word_embeddings) {  // tied: llama.cpp uses token_embd as the output
    add("output.weight", {V, C}, true, [=] { return read("lm_head.weight"); });
  }

  GgufMetadata m;
  const std::string name =
      o.name.empty() ? fs::absolute(o.model).lexically_normal().filename().string() : o.name;
  const std::string& a = arch.name;
  m.add_string("general.architecture", a);
  m.add_string("general.type", "model");
  m.add_string("general.name", name);
  m.add_u32("general.file_type", ft.file_type);
  m.add_u32("general.quantization_version", 2);
  const std::vector<std::string> experts = src.folder.expert_names();
  if (src.folder.merged()) {
    m.add_string("btx.merge.method", src.folder.method());
    m.add_u32("general.base_model.count", static_cast<uint32_t>(experts.size()));
    for (size_t i = 0; i < experts.size(); ++i) {
      m.add_string(fmt::format("general.base_model.{}.name", i), experts[i]);
    }
  }
  if (c.is_moe()) m.add_string("btx.router_mode", c.router_mode);
  auto u32 = [&](const std::string& key, int64_t v) {
    m.add_u32(a + "." + key, static_cast<uint32_t>(v));
  };
  u32("vocab_size", V);
  // The longest sequence btx computes it for (Mistral's sliding window, which llama.cpp's
  // llama architecture does not apply, caps it).
  u32("context_length", c.max_sequence());
  u32("embedding_length", C);
  u32("block_count", c.num_hidden_layers);
  u32("feed_forward_length", F);
  u32("rope.dimension_count", D);
  u32("attention.head_count", H);
  u32("attention.head_count_kv", KV);
  u32("attention.key_length", D);
  u32("attention.value_length", D);
  m.add_f32(a + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  m.add_f32(a + ".rope.freq_base", static_cast<float>(c.rope_theta));
  if (c.rope_scaling_type == "linear") {
    m.add_string(a + ".rope.scaling.type", "linear");
    m.add_f32(a + ".rope.scaling.factor", static_cast<float>(c.rope_scaling_factor));
  }
  if (c.is_moe()) {
    u32("expert_count", E);
    u32("expert_used_count", src.hf_config["num_experts_per_tok"].get<int64_t>());  // HF's k
    if (arch.name == "qwen3moe") u32("expert_feed_forward_length", F);
  }
  // The vocabulary: every row of the embedding has a token (ids no token has are "[PADi]",
  // unused, as llama.cpp's converter writes them).
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int64_t id = 0; id < V; ++id) {
    const bool has =
        id < tok.vocab_size() && tok.piece_type(static_cast<int32_t>(id)) != spm::kUnused;
    pieces.push_back(has ? tok.piece(static_cast<int32_t>(id)) : fmt::format("[PAD{}]", id));
    scores.push_back(id < tok.vocab_size() ? tok.score(static_cast<int32_t>(id)) : 0.0f);
    types.push_back(has ? tok.piece_type(static_cast<int32_t>(id)) : spm::kUnused);
  }
  if (tok.is_hf()) {
    m.add_string("tokenizer.ggml.model", "gpt2");  // byte-level BPE
    m.add_string("tokenizer.ggml.pre", pre);
    m.add_strings("tokenizer.ggml.tokens", pieces);
    m.add_i32s("tokenizer.ggml.token_type", types);
    m.add_strings("tokenizer.ggml.merges", tok.bpe_merges());
  } else {
    m.add_string("tokenizer.ggml.model", "llama");
    m.add_strings("tokenizer.ggml.tokens", pieces);
    m.add_f32s("tokenizer.ggml.scores", scores);
    m.add_i32s("tokenizer.ggml.token_type", types);
  }
  if (tok.bos_id() >= 0) m.add_u32("tokenizer.ggml.bos_token_id", tok.bos_id());
  if (tok.eos_id() >= 0) m.add_u32("tokenizer.ggml.eos_token_id", tok.eos_id());
  if (tok.unk_id() >= 0) m.add_u32("tokenizer.ggml.unknown_token_id", tok.unk_id());
  m.add_bool("tokenizer.ggml.add_bos_token", false);  // btx trains on the plain token stream
  m.add_bool("tokenizer.ggml.add_eos_token", false);
  if (!tok.is_hf()) m.add_bool("tokenizer.ggml.add_space_prefix", tok.add_dummy_prefix());
  // None given: the tokenizer's own template, else plain (as serve's default).
  const ChatTemplate chat =
      o.chat_template ? *o.chat_template : resolve_chat_template("", src.tokenizer_file);
  if (!chat.empty()) m.add_string("tokenizer.chat_template", chat.jinja());

  std::vector<GgufTensorSpec> specs;
  std::map<std::string, std::function<torch::Tensor()>> makers;
  int64_t params = 0;
  for (const auto& t : tensors) {
    specs.push_back(t.spec);
    makers[t.spec.name] = t.make;
    int64_t n = 1;
    for (auto d : t.spec.shape) n *= d;
    params += n;
  }
  save_gguf(o.out, m, specs, [&](const std::string& n) {
    torch::NoGradGuard no_grad;
    return makers.at(n)();
  });
  return {{"architecture", c.is_moe() && a == "llama" ? "llama (MoE)" : a},
          {"tensors", specs.size()},
          {"parameters", params},
          {"bytes", static_cast<int64_t>(fs::file_size(o.out))},
          {"experts", experts}};
}

}  // namespace btx
