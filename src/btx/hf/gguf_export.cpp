#include "btx/hf/gguf_export.h"

#include "btx/hf/hf.h"
#include "btx/io/gguf.h"
#include "btx/io/safetensors.h"
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
// rows of each head of a Q or K projection [heads * D, C] reordered, as llama.cpp's converter.
torch::Tensor permute_rotary(const torch::Tensor& w, int64_t heads) {
  const int64_t D = w.size(0) / heads;
  return w.reshape({heads, 2, D / 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

// One GGUF tensor and how it is made from the checkpoint.
struct Source {
  GgufTensorSpec spec;
  std::function<torch::Tensor()> make;
};

}  // namespace

nlohmann::json export_gguf(const GgufExportOptions& o) {
  const FileType ft = parse_gguf_dtype(o.dtype);
  const ExportSource src = open_export_source(o.model, o.tokenizer);
  const ModelConfig& c = src.config;
  const Tokenizer& tok = src.tokenizer;
  BTX_CHECK(!fs::exists(o.out),
            "{} exists: export writes a new file (remove it or pick another --out)",
            o.out.string());
  BTX_CHECK(c.head_dim() % 2 == 0, "{}: head_dim {} is odd, which rotary embeddings do not allow",
            o.model.string(), c.head_dim());
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
  add("token_embd.weight", {V, C}, true, [=] { return read("model.embed_tokens.weight"); });
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string hf = fmt::format("model.layers.{}.", l), gg = fmt::format("blk.{}.", l);
    add(gg + "attn_norm.weight", {C}, false, [=] { return read(hf + "input_layernorm.weight"); });
    add(gg + "attn_q.weight", {H * D, C}, true,
        [=] { return permute_rotary(read(hf + "self_attn.q_proj.weight"), H); });
    add(gg + "attn_k.weight", {KV * D, C}, true,
        [=] { return permute_rotary(read(hf + "self_attn.k_proj.weight"), KV); });
    add(gg + "attn_v.weight", {KV * D, C}, true,
        [=] { return read(hf + "self_attn.v_proj.weight"); });
    add(gg + "attn_output.weight", {C, H * D}, true,
        [=] { return read(hf + "self_attn.o_proj.weight"); });
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
  m.add_string("general.architecture", "llama");
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
  m.add_u32("llama.vocab_size", static_cast<uint32_t>(V));
  m.add_u32("llama.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  m.add_u32("llama.embedding_length", static_cast<uint32_t>(C));
  m.add_u32("llama.block_count", static_cast<uint32_t>(c.num_hidden_layers));
  m.add_u32("llama.feed_forward_length", static_cast<uint32_t>(F));
  m.add_u32("llama.rope.dimension_count", static_cast<uint32_t>(D));
  m.add_u32("llama.attention.head_count", static_cast<uint32_t>(H));
  m.add_u32("llama.attention.head_count_kv", static_cast<uint32_t>(KV));
  m.add_f32("llama.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  m.add_f32("llama.rope.freq_base", static_cast<float>(c.rope_theta));
  if (c.is_moe()) {
    m.add_u32("llama.expert_count", static_cast<uint32_t>(E));
    m.add_u32("llama.expert_used_count",
              src.hf_config["num_experts_per_tok"].get<uint32_t>());  // Mixtral's k (top-1, all)
  }
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int id = 0; id < tok.vocab_size(); ++id) {
    pieces.push_back(tok.piece(id));
    scores.push_back(tok.score(id));
    types.push_back(tok.piece_type(id));
  }
  m.add_string("tokenizer.ggml.model", "llama");
  m.add_strings("tokenizer.ggml.tokens", pieces);
  m.add_f32s("tokenizer.ggml.scores", scores);
  m.add_i32s("tokenizer.ggml.token_type", types);
  if (tok.bos_id() >= 0) m.add_u32("tokenizer.ggml.bos_token_id", tok.bos_id());
  if (tok.eos_id() >= 0) m.add_u32("tokenizer.ggml.eos_token_id", tok.eos_id());
  if (tok.unk_id() >= 0) m.add_u32("tokenizer.ggml.unknown_token_id", tok.unk_id());
  m.add_bool("tokenizer.ggml.add_bos_token", false);  // btx trains on the plain token stream
  m.add_bool("tokenizer.ggml.add_eos_token", false);
  m.add_bool("tokenizer.ggml.add_space_prefix", tok.add_dummy_prefix());
  if (!o.chat_template.empty()) {
    m.add_string("tokenizer.chat_template", o.chat_template.jinja());
  }

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
  return {{"architecture", c.is_moe() ? "llama (MoE)" : "llama"},
          {"tensors", specs.size()},
          {"parameters", params},
          {"bytes", static_cast<int64_t>(fs::file_size(o.out))},
          {"experts", experts}};
}

}  // namespace btx
