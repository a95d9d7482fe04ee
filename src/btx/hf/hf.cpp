#include "btx/hf/hf.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <regex>
#include <set>

#include "btx/data/tokenizer.h"
#include "btx/hf/tokenizer_json.h"
#include "btx/io/safetensors.h"
#include "btx/model/router.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

namespace {

struct DtypeInfo {
  torch::ScalarType type;
  const char* hf_name;
};

DtypeInfo parse_dtype(const std::string& name) {
  if (name == "float32") return {torch::kFloat32, "float32"};
  if (name == "bfloat16") return {torch::kBFloat16, "bfloat16"};
  if (name == "float16") return {torch::kHalf, "float16"};
  fail("--dtype '{}': expected float32, bfloat16 or float16", name);
}

// Tensors btx keeps that are no part of the HF model: the REINFORCE router's learned baseline
// (training only).
bool btx_only_tensor(const std::string& name) {
  return name.find(".block_sparse_moe.baseline.") != std::string::npos;
}

// The MoE router kinds that export, "top-k, soft, gumbel or reinforce".
std::string exportable_routers() {
  std::vector<std::string> names;
  for (const auto& r : router_table()) {
    if (r.model_type == ModelType::kMixtral && r.hf != HfRouting::kNone) {
      names.push_back(r.name);
    }
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  }
  return out;
}

// Why a merged folder that is not one checkpoint has no HF form.
std::string not_one_model(const ModelFolder& model) {
  const std::string& method = model.method();
  if (model.kind() == ModelKind::kEnsemble) {
    return "a BTM ensemble: its experts stay separate models whose next-token distributions are "
           "mixed at every token, which no single Hugging Face or GGUF model computes";
  }
  if (model.kind() == ModelKind::kStitched) {
    return "a Branch-Train-Stitch model: the seed and every expert run side by side, joined by "
           "stitch layers between their residual streams, which no Hugging Face or GGUF "
           "architecture has";
  }
  if (!method.empty()) {
    return fmt::format(
        "a '{}' description evaluated per domain (one merged model per target domain), not one "
        "model",
        method);
  }
  return "not a checkpoint folder (no model.safetensors with config.json)";
}

int64_t numel_of(const TensorInfo& t) {
  int64_t n = 1;
  for (auto d : t.shape) n *= d;
  return n;
}

// Each tensor of a checkpoint by name: the file that holds it and its header entry.
using TensorIndex = std::map<std::string, std::pair<fs::path, TensorInfo>>;

// Where each tensor of a HF checkpoint is (model.safetensors, or the shards of
// model.safetensors.index.json) and what it is, from the files' headers alone.
TensorIndex hf_tensor_index(const fs::path& dir) {
  const fs::path index = dir / "model.safetensors.index.json";
  TensorIndex out;
  auto add = [&](const fs::path& file, const std::set<std::string>* expected) {
    for (const auto& [name, info] : read_safetensors_header(file)) {
      const auto type = info.scalar_type();
      BTX_CHECK(type == torch::kFloat32 || type == torch::kBFloat16 || type == torch::kHalf,
                "{}: tensor {} is {}; expected F32, BF16 or F16", file.string(), name, info.dtype);
      if (expected && !expected->count(name)) continue;  // the index puts it elsewhere
      out.emplace(name, std::make_pair(file, info));
    }
  };
  if (!fs::exists(index)) {
    const fs::path single = dir / "model.safetensors";
    BTX_CHECK(fs::exists(single), "{}: no model.safetensors and no model.safetensors.index.json",
              dir.string());
    add(single, nullptr);
    return out;
  }
  const auto j = read_json_file(index);
  BTX_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
            "{}: no \"weight_map\" object", index.string());
  std::map<std::string, std::set<std::string>> by_shard;
  for (const auto& [name, file] : j["weight_map"].items()) {
    BTX_CHECK(file.is_string(), "{}: weight_map[\"{}\"] is not a file name", index.string(), name);
    by_shard[file.get<std::string>()].insert(name);
  }
  for (const auto& [file, names] : by_shard) {
    BTX_CHECK(fs::path(file).filename() == file, "{}: shard name '{}' is not a plain file name",
              index.string(), file);
    BTX_CHECK(fs::exists(dir / file), "{}: shard {} named by the index is missing", index.string(),
              (dir / file).string());
    add(dir / file, &names);
    for (const auto& n : names) {
      BTX_CHECK(out.count(n), "{}: the index puts tensor {} in {}, which does not hold it",
                index.string(), n, file);
    }
  }
  return out;
}

// Tensors a HF checkpoint may hold that are no weight of btx's model: rotary tables, and the
// lm_head that copies a tied embedding.
bool skipped_tensor(const std::string& name, bool tied) {
  return name.find("rotary_emb.inv_freq") != std::string::npos ||
         (name == "lm_head.weight" && tied);
}

// The parameters of the dense model `c` describes, counted from the config alone.
int64_t dense_params(const ModelConfig& c) {
  const int64_t C = c.hidden_size, D = c.head_dim(), F = c.intermediate_size;
  const int64_t q = c.num_attention_heads * D, kv = c.num_key_value_heads * D;
  int64_t layer = C * q + 2 * C * kv + q * C + 3 * C * F + 2 * C;
  if (c.qkv_bias()) layer += q + 2 * kv;
  if (c.o_bias()) layer += C;
  if (c.qk_norm()) layer += 2 * D;
  return c.vocab_size * C * (c.tie_word_embeddings ? 1 : 2) + c.num_hidden_layers * layer + C;
}

// The checkpoint's tensors by their headers; a config whose model is larger than the weights
// (its parameters counted from config.json against the elements the headers describe) is
// refused here, before a model of that config is built: a hostile config cannot allocate beyond
// the checkpoint's own size.
TensorIndex checked_hf_index(const fs::path& dir, const ModelConfig& c) {
  auto index = hf_tensor_index(dir);
  int64_t held = 0;
  for (const auto& [name, where] : index) {
    if (!skipped_tensor(name, c.tie_word_embeddings)) held += numel_of(where.second);
  }
  // More than the weights hold cannot be theirs (fewer: the names and shapes say which
  // tensor is too many, read_hf_weights).
  const int64_t want = dense_params(c);
  BTX_CHECK(want <= held,
            "{}: config.json describes a model of {} parameters, more than the {} values its "
            "weights hold",
            dir.string(), want, held);
  return index;
}

// The weights of `model` from the checkpoint `index` describes, every name, shape and dtype
// checked from the headers before any weight is read (a checkpoint with a tensor too many is
// refused without reading it), then each weight read once into its parameter, as float32. A
// weight that is not finite is an error naming it.
void read_hf_weights(const fs::path& dir, const TensorIndex& index, CausalLM& model) {
  const bool tied = model->config().tie_word_embeddings;
  std::set<std::string> used;
  for (auto& p : model->named_parameters()) {
    const auto it = index.find(p.key());
    BTX_CHECK(it != index.end(), "{}: tensor {} is missing", dir.string(), p.key());
    const auto& shape = it->second.second.shape;
    BTX_CHECK(std::vector<int64_t>(shape.begin(), shape.end()) == p.value().sizes().vec(),
              "{}: tensor {} has shape {}, expected {}", dir.string(), p.key(),
              fmt::join(shape, "x"), fmt::join(p.value().sizes(), "x"));
    used.insert(p.key());
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, where] : index) {
    if (!used.count(name) && !skipped_tensor(name, tied)) unexpected.push_back(name);
  }
  BTX_CHECK(unexpected.empty(), "{}: tensors a {} of this config does not have: {}", dir.string(),
            hf_architecture(model->config().base_model_type), fmt::join(unexpected, ", "));
  // Each weight goes into its parameter a slice at a time: beyond the model itself, import holds
  // one slice in the file's dtype and its checks (a whole embedding converted at once, with the
  // temporaries of its finiteness check, took 2.6 GB above a 2 GB model).
  constexpr int64_t kSlice = int64_t{1} << 22;  // elements
  std::map<fs::path, std::unique_ptr<SafetensorsReader>> readers;
  for (auto& p : model->named_parameters()) {
    const auto& [file, info] = index.at(p.key());
    auto& r = readers[file];
    if (!r) r = std::make_unique<SafetensorsReader>(file);
    torch::Tensor flat = p.value().view({-1});
    torch::Tensor slice;
    int64_t bad = 0;
    for (int64_t start = 0; start < flat.numel(); start += kSlice) {
      const int64_t n = std::min(kSlice, flat.numel() - start);
      if (!slice.defined() || slice.numel() != n) slice = torch::empty({n}, info.scalar_type());
      r->read_range(p.key(), start, slice);
      auto into = flat.narrow(0, start, n);
      into.copy_(slice);
      bad += (~torch::isfinite(into)).sum().item<int64_t>();
    }
    BTX_CHECK(bad == 0, "{}: tensor {} has {} values that are not finite (NaN or infinity)",
              file.string(), p.key(), bad);
  }
}

}  // namespace

nlohmann::json hf_config(const ModelConfig& c, const std::string& what,
                         const std::string& torch_dtype) {
  BTX_CHECK(!c.is_smear(),
            "{} is a SMEAR model: each layer merges its experts' weights with router weights "
            "computed from the sequence so far, which no Hugging Face architecture computes; "
            "export a dense merge (average, weighted-average) or a BTX MoE instead",
            what);
  BTX_CHECK(!c.has_attention_experts(),
            "{} is a BAM model: each layer mixes {} attention experts with a soft router, which "
            "no Hugging Face architecture computes (Mixtral has one attention per layer); export a "
            "BTX MoE (btx, upcycle) or a dense merge instead, or use `btx generate` / `btx serve` "
            "on it",
            what, c.num_attention_experts);
  BTX_CHECK(c.num_null_experts == 0,
            "{} has {} null experts per layer: a token may run 0 to {} of its experts, which no "
            "Hugging Face architecture computes (Mixtral runs exactly {} per token); use `btx "
            "generate` / `btx serve` on it, or export a btx MoE without null experts",
            what, c.num_null_experts, c.num_experts_per_tok, c.num_experts_per_tok);
  BTX_CHECK(!c.router_context,
            "{} routes each token by its hidden state mixed with the mean of its prefix "
            "(router_context), which Hugging Face Mixtral's router does not compute; use `btx "
            "generate` / `btx serve` on it",
            what);
  int64_t k = c.num_experts_per_tok;
  if (c.is_moe()) {
    const RouterTraits& r = c.router();
    switch (r.hf) {
      case HfRouting::kTopK:
        break;
      case HfRouting::kAllTopE:  // every expert, softmax weights: Mixtral's top-E
        k = c.num_local_experts;
        break;
      case HfRouting::kTopOne:  // the argmax at inference, gate 1: Mixtral's top-1
        k = 1;
        break;
      case HfRouting::kNone:
        fail(
            "{} routes with router_mode \"{}\", which Hugging Face Mixtral does not compute "
            "(its router is a learned top-k softmax): btx models with {} routing export",
            what, r.name, exportable_routers());
    }
  }
  const BaseModelType base = c.base_model_type;
  const bool qwen3_moe = c.is_moe() && base == BaseModelType::kQwen3;
  if (c.is_moe()) {
    BTX_CHECK(base != BaseModelType::kQwen2,
              "{} is a mixture of experts on a Qwen2 base, which no Hugging Face architecture "
              "computes: Qwen2-MoE adds an always-on shared expert with a sigmoid gate to every "
              "layer, and Qwen3-MoE's attention has no q/k/v biases; export a dense merge "
              "(Qwen2ForCausalLM) instead, or use `btx generate` / `btx serve` on it",
              what);
    BTX_CHECK(!c.attention_bias || qwen3_moe,
              "{} has attention biases, which Hugging Face Mixtral does not compute", what);
  }
  nlohmann::json rope_scaling = nullptr;
  if (!c.rope_scaling_type.empty()) {
    rope_scaling = {{"rope_type", c.rope_scaling_type}, {"factor", c.rope_scaling_factor}};
    if (c.rope_scaling_type == "llama3") {
      rope_scaling["low_freq_factor"] = c.rope_low_freq_factor;
      rope_scaling["high_freq_factor"] = c.rope_high_freq_factor;
      rope_scaling["original_max_position_embeddings"] = c.rope_original_max_position_embeddings;
    }
  }
  nlohmann::json j = {
      {"architectures",
       {c.is_moe() ? (qwen3_moe ? "Qwen3MoeForCausalLM" : "MixtralForCausalLM")
                   : hf_architecture(base)}},
      {"model_type", c.is_moe() ? (qwen3_moe ? "qwen3_moe" : "mixtral") : name_of(base)},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim()},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", rope_scaling},
      {"rms_norm_eps", c.rms_norm_eps},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"initializer_range", c.initializer_range},
      {"bos_token_id", c.bos_token_id},
      {"eos_token_id", c.eos_token_id},
      {"hidden_act", "silu"},
      {"attention_dropout", 0.0},
      {"use_cache", true},
      {"torch_dtype", torch_dtype},
  };
  switch (base) {
    case BaseModelType::kLlama:
      j["attention_bias"] = c.attention_bias;
      if (!c.is_moe()) {
        j["mlp_bias"] = false;
        j["pretraining_tp"] = 1;
      }
      break;
    case BaseModelType::kMistral:
      j["sliding_window"] = c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nullptr;
      break;
    case BaseModelType::kQwen3:
      j["attention_bias"] = c.attention_bias;
      [[fallthrough]];
    case BaseModelType::kQwen2:  // full attention in every layer
      j["use_sliding_window"] = false;
      j["sliding_window"] = nullptr;
      j["max_window_layers"] = c.num_hidden_layers;
      break;
  }
  if (qwen3_moe) {  // every layer sparse, the top-k weights renormalised (as Mixtral's)
    j["num_experts"] = c.num_local_experts;
    j["num_experts_per_tok"] = k;
    j["moe_intermediate_size"] = c.intermediate_size;
    j["decoder_sparse_step"] = 1;
    j["mlp_only_layers"] = nlohmann::json::array();
    j["norm_topk_prob"] = true;
    j["router_aux_loss_coef"] = c.router_aux_loss_coef;
    j["output_router_logits"] = false;
  } else if (c.is_moe()) {
    j["num_local_experts"] = c.num_local_experts;
    j["num_experts_per_tok"] = k;
    j["router_aux_loss_coef"] = c.router_aux_loss_coef;
    j["output_router_logits"] = false;
    j["router_jitter_noise"] = 0.0;
    if (!j.contains("sliding_window")) j["sliding_window"] = nullptr;
  }
  return j;
}

std::string hf_tensor_name(const ModelConfig& c, const std::string& name) {
  if (!c.is_moe() || c.base_model_type != BaseModelType::kQwen3) return name;
  // Qwen3-MoE: mlp.gate, mlp.experts.j.{gate,up,down}_proj for Mixtral's block_sparse_moe.gate
  // and experts.j.{w1,w3,w2}.
  static const std::regex moe(
      R"((model\.layers\.\d+\.)block_sparse_moe\.(gate\.weight|experts\.\d+\.)(w1|w2|w3)?(\.weight)?)");
  std::smatch m;
  if (!std::regex_match(name, m, moe)) return name;
  if (!m[3].matched) return m[1].str() + "mlp." + m[2].str();
  const std::string proj = m[3] == "w1" ? "gate_proj" : m[3] == "w3" ? "up_proj" : "down_proj";
  return m[1].str() + "mlp." + m[2].str() + proj + m[4].str();
}

ExportSource open_export_source(const fs::path& model, const fs::path& tokenizer) {
  ModelFolder folder = ModelFolder::open(model);
  BTX_CHECK(is_checkpoint(model),
            "{} is {}; export one of its experts (experts/NAME) or a merged "
            "model (average, weighted-average, btx, upcycle, dense)",
            model.string(), not_one_model(folder));
  ModelConfig c = folder.config();
  nlohmann::json hf = hf_config(c, model.string());
  const fs::path tok_file = model_tokenizer(model, tokenizer);
  Tokenizer tok = Tokenizer::load(tok_file);
  // Qwen's embeddings have more rows than its tokenizer has tokens; never fewer.
  BTX_CHECK(tok.vocab_size() <= c.vocab_size, "{} has {} tokens but {} has vocab_size {}",
            tok_file.string(), tok.vocab_size(), model.string(), c.vocab_size);
  return {std::move(folder), std::move(c), std::move(hf), tok_file, std::move(tok)};
}

nlohmann::json export_hf(const HfExportOptions& o) {
  const DtypeInfo dtype = parse_dtype(o.dtype);
  const ExportSource src = open_export_source(o.model, o.tokenizer);
  const ModelConfig& c = src.config;
  const nlohmann::json config = hf_config(c, o.model.string(), dtype.hf_name);
  const fs::path& tok_file = src.tokenizer_file;
  const Tokenizer& tok = src.tokenizer;
  BTX_CHECK(o.max_shard_bytes > 0, "--max-shard-size must be positive");
  BTX_CHECK(!fs::exists(o.out),
            "{} exists: export writes a new folder (remove it or pick another "
            "--out)",
            o.out.string());

  // Shards: tensors in name order, a new shard when the next would pass the limit.
  const SafetensorsReader reader(o.model / "model.safetensors");
  std::vector<std::vector<std::string>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0, params = 0;
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype.type));
  for (const auto& [name, info] : reader.tensors()) {
    if (btx_only_tensor(name)) continue;
    const int64_t bytes = numel_of(info) * elem;
    if (!shards.back().empty() && shard_bytes + bytes > o.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(name);
    shard_bytes += bytes;
    total_bytes += bytes;
    params += numel_of(info);
  }
  const size_t n = shards.size();
  auto shard_file = [&](size_t i) {
    return n == 1 ? std::string("model.safetensors")
                  : fmt::format("model-{:05}-of-{:05}.safetensors", i + 1, n);
  };
  const int bos = tok.bos_id(), eos = tok.eos_id(), unk = tok.unk_id();
  write_dir_atomic(o.out, [&](const fs::path& tmp) {
    nlohmann::json weight_map = nlohmann::json::object();
    for (size_t i = 0; i < n; ++i) {
      TensorLayout layout;
      std::map<std::string, std::string> btx_name;  // by HF name
      for (const auto& name : shards[i]) {
        const auto& info = reader.tensors().at(name);
        const std::string hf = hf_tensor_name(c, name);
        btx_name[hf] = name;
        layout[hf] = {dtype.type, info.shape};
        weight_map[hf] = shard_file(i);
      }
      save_safetensors_streaming(
          tmp / shard_file(i), layout, {{"format", "pt"}},
          [&](const std::string& hf) { return reader.read(btx_name.at(hf)).to(dtype.type); });
    }
    if (n > 1) {
      const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}},
                                    {"weight_map", weight_map}};
      write_file_atomic(tmp / "model.safetensors.index.json", index.dump(2));
    }
    write_file_atomic(tmp / "config.json", config.dump(2));
    write_file_atomic(tmp / "generation_config.json",
                      nlohmann::json{{"bos_token_id", c.bos_token_id},
                                     {"eos_token_id", c.eos_token_id},
                                     {"max_length", c.max_position_embeddings}}
                          .dump(2));
    if (tok_file.extension() == ".json") {
      // A Hugging Face tokenizer leaves as it came; a chat template given replaces its config's.
      fs::copy_file(tok_file, tmp / "tokenizer.json");
      const fs::path tok_config = tok_file.parent_path() / "tokenizer_config.json";
      if (fs::exists(tok_config) && !o.chat_template) {
        fs::copy_file(tok_config, tmp / "tokenizer_config.json");
      } else if (fs::exists(tok_config) || o.chat_template) {
        nlohmann::ordered_json tc = nlohmann::ordered_json::object();
        if (fs::exists(tok_config)) tc = nlohmann::ordered_json::parse(read_file(tok_config));
        const std::string jinja = o.chat_template->jinja();
        if (jinja.empty()) {
          tc.erase("chat_template");
        } else {
          tc["chat_template"] = jinja;
        }
        write_file_atomic(tmp / "tokenizer_config.json", tc.dump(2));
      }
    } else {
      const ChatTemplate chat = o.chat_template.value_or(builtin_chat_template("plain"));
      fs::copy_file(tok_file, tmp / "tokenizer.model");
      write_file_atomic(tmp / "tokenizer.json", hf_tokenizer_json(tok).dump(2));
      write_file_atomic(tmp / "tokenizer_config.json",
                        hf_tokenizer_config(tok, c.max_position_embeddings, chat.jinja()).dump(2));
      nlohmann::json special = nlohmann::json::object();
      if (bos >= 0) special["bos_token"] = tok.piece(bos);
      if (eos >= 0) special["eos_token"] = tok.piece(eos);
      if (unk >= 0) special["unk_token"] = tok.piece(unk);
      write_file_atomic(tmp / "special_tokens_map.json", special.dump(2));
    }
  });
  return {{"architecture", config["architectures"][0]},
          {"shards", n},
          {"parameters", params},
          {"bytes", total_bytes}};
}

namespace {
// The tokenizer a checkpoint ships: tokenizer.model (sentencepiece, as Llama 2 checkpoints) or
// tokenizer.json (Hugging Face's, with tokenizer_config.json beside it).
fs::path checkpoint_tokenizer(const fs::path& hf) {
  if (fs::exists(hf / "tokenizer.model")) return hf / "tokenizer.model";
  BTX_CHECK(fs::exists(hf / "tokenizer.json"),
            "{}: no tokenizer.json and no tokenizer.model: btx needs the model's tokenizer",
            hf.string());
  return hf / "tokenizer.json";
}
}  // namespace

RunConfig import_hf(const HfImportOptions& o) {
  const fs::path cfg_file = o.hf / "config.json";
  BTX_CHECK(fs::exists(cfg_file), "{}: no config.json, so not a Hugging Face checkpoint folder",
            o.hf.string());
  const nlohmann::json j = read_json_file(cfg_file);
  BTX_CHECK(j.is_object(), "{}: is {}; expected a model's config (a JSON object)",
            cfg_file.string(), j.dump().substr(0, 60));
  // The Hugging Face classes btx imports: the dense class of each base (hf_architecture).
  std::vector<std::string> supported;
  for (const auto& n : names(BaseModelType{})) supported.push_back(hf_architecture(n.value));
  BTX_CHECK(j.contains("architectures"), "{}: no architectures (expected one of {})",
            cfg_file.string(), fmt::join(supported, ", "));
  const auto& archs = j["architectures"];
  BTX_CHECK(archs.is_array() && archs.size() == 1 && archs[0].is_string(),
            "{}: architectures is {}; expected a list of one name, e.g. [\"LlamaForCausalLM\"]",
            cfg_file.string(), archs.dump());
  const std::string arch = archs[0].get<std::string>();
  const auto& bases = names(BaseModelType{});
  const auto known = std::find_if(bases.begin(), bases.end(),
                                  [&](const auto& n) { return hf_architecture(n.value) == arch; });
  BTX_CHECK(known != bases.end(),
            "{}: architecture '{}' cannot be imported as a seed (supported: {})", cfg_file.string(),
            arch, fmt::join(supported, ", "));
  // The architecture's keys, each of its type (errors name the file and the key); a key that
  // changes the computation btx does not implement is refused by name.
  ModelConfig mc = model_config_from_json(j, cfg_file.string());
  BTX_CHECK(mc.model_type == ModelType::kLlama && mc.base_model_type == known->value,
            "{}: model_type '{}' is not what {} is (expected '{}')", cfg_file.string(),
            j.value("model_type", std::string("?")), arch, known->name);
  const fs::path tok_file = checkpoint_tokenizer(o.hf);
  const Tokenizer tok = Tokenizer::load(tok_file);
  // The embedding may have more rows than the tokenizer has tokens (Qwen pads 151,669 to
  // 151,936); never fewer.
  BTX_CHECK(tok.vocab_size() <= mc.vocab_size,
            "{} has {} tokens but {} says vocab_size {}: the embedding has no row for the last "
            "ones",
            tok_file.string(), tok.vocab_size(), cfg_file.string(), mc.vocab_size);

  // The weights, name for name and shape for shape, checked before they are read.
  torch::NoGradGuard no_grad;
  const TensorIndex index = checked_hf_index(o.hf, mc);  // before the model is built
  CausalLM model(mc);
  read_hf_weights(o.hf, index, model);

  // The run: the given config with the HF model, validated as if read from a file.
  RunConfig rc = o.config;
  rc.model = mc;
  rc.tokenizer.vocab_size = static_cast<int>(mc.vocab_size);
  rc = parse_run_config(run_config_to_toml(rc), "the imported run's config");
  BTX_CHECK(!fs::exists(o.run.seed()), "{} already has a seed: import into a new run folder",
            o.run.root.string());
  // The tokenizer's files, as they came (tokenizer.json with its tokenizer_config.json).
  std::vector<std::string> tok_files = {tok_file.filename().string()};
  if (tok_file.extension() == ".json" && fs::exists(o.hf / "tokenizer_config.json")) {
    tok_files.push_back("tokenizer_config.json");
  }
  const fs::path had = o.run.tokenizer_file();
  BTX_CHECK(!fs::exists(had) || had.filename() == tok_file.filename(),
            "{} has a tokenizer of its own ({}): import into a new run folder", o.run.root.string(),
            had.string());
  for (const auto& f : tok_files) {
    const fs::path there = o.run.root / f;
    BTX_CHECK(!fs::exists(there) || sha256_file(there) == sha256_file(o.hf / f),
              "{} has another {}: import into a new run folder", o.run.root.string(), f);
  }
  init_run(Run(o.run, rc), o.force);
  for (const auto& f : tok_files) {
    if (!fs::exists(o.run.root / f)) write_file_atomic(o.run.root / f, read_file(o.hf / f));
  }
  TrainState state;
  state.done = true;
  state.extra = {{"imported_from", fs::absolute(o.hf).string()}, {"architecture", arch}};
  save_checkpoint(o.run.seed(), {&model, nullptr, &state, {}});
  spdlog::info("imported {} ({}, {} parameters) as the seed of {}", o.hf.string(), arch,
               model->num_params(), o.run.root.string());
  return rc;
}

}  // namespace btx
