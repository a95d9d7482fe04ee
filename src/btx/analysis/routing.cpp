#include "btx/analysis/routing.h"

#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/evaluate.h"
#include "btx/model/attention_experts.h"
#include "btx/model/moe.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"

namespace btx {

namespace {

std::vector<double> to_vector(const torch::Tensor& t) {
  auto c = t.to(torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

torch::Tensor routing_top1(const Routing& r) {
  if (r.experts.size(1) == r.probs.size(1) && r.experts.size(1) > 1) return r.probs.argmax(1);
  return r.experts.select(1, 0);
}

ExpertSlots expert_slots(const ModelFolder& model, int64_t E) {
  ExpertSlots out;
  out.domains.resize(static_cast<size_t>(E));
  for (const auto& s : model.slots()) {
    if (static_cast<int64_t>(out.names.size()) >= E) break;
    out.names.push_back(s.name);
    out.domains[out.names.size() - 1] = s.domains;
  }
  for (int64_t e = static_cast<int64_t>(out.names.size()); e < E; ++e)
    out.names.push_back(std::to_string(e));
  return out;
}

std::vector<int64_t> own_expert_slots(const ExpertSlots& slots, const std::string& domain) {
  std::vector<int64_t> out;
  for (size_t e = 0; e < slots.domains.size(); ++e) {
    const auto& ds = slots.domains[e];
    if (ds.size() == 1 && ds[0] == domain) out.push_back(static_cast<int64_t>(e));
  }
  return out;
}

std::vector<DomainWindows> analysis_windows(const Run& run, const std::vector<CorpusDomain>& novel,
                                            int64_t windows) {
  const RunConfig& c = run.config();
  const int64_t T = c.seed_train.seq_len;
  std::vector<DomainWindows> out;
  const ShardSet& data = run.shards();
  for (const auto& d : data.domains()) {
    const auto& shard = data.shard(d, "test");
    out.push_back({d, false, heldout_windows(shard.slice(0, shard.size()), windows, T)});
  }
  if (!novel.empty()) {
    const Tokenizer& tok = run.tokenizer();
    const int64_t scored = run_eval_options(c, "test").novel_max_tokens;
    for (const auto& d : novel) {
      out.push_back(
          {d.name, true, heldout_windows(novel_domain_tokens(d, tok, scored), windows, T)});
    }
  }
  for (const auto& w : out) {
    BTX_CHECK(w.windows.size(0) >= 1, "domain '{}' has no test window of {} tokens", w.domain,
              T + 1);
  }
  return out;
}

std::string piece_for_display(const Tokenizer& tok, int64_t id) {
  const std::string& piece = tok.piece_text(static_cast<int32_t>(id));
  const std::string json =
      nlohmann::json(piece).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return nlohmann::json::parse(json).get<std::string>();
}

namespace {
// The routing of the first `n` positions of the last forward, per token and layer.
nlohmann::json token_routing(const std::vector<RoutedFfnImpl*>& layers, const Tokenizer& tok,
                             const torch::Tensor& ids /* (n) */) {
  nlohmann::json tokens = nlohmann::json::array();
  for (int64_t i = 0; i < ids.size(0); ++i) {
    nlohmann::json per = nlohmann::json::array();
    for (auto* layer : layers) {
      const Routing& ro = *layer->last_routing();
      per.push_back({{"experts", to_vector(ro.experts[i])}, {"weights", to_vector(ro.weights[i])}});
    }
    tokens.push_back({{"piece", piece_for_display(tok, ids[i].item<int64_t>())}, {"layers", per}});
  }
  return tokens;
}
}  // namespace

nlohmann::json routing_analysis(const Run& run, const ModelFolder& folder,
                                const RoutingOptions& opts) {
  const RunConfig& c = run.config();
  torch::NoGradGuard no_grad;
  const fs::path& model_dir = folder.path();
  BTX_CHECK(folder.config().is_routed(),
            "{} is not an MoE or SMEAR model (model_type \"{}\"): routing analysis needs a "
            "routed model (btx, upcycle, smear, ...)",
            model_dir.string(), name_of(folder.config().model_type));
  CausalLM model = folder.model();
  model->eval();
  auto layers = routed_layers(model);
  // BAM: each layer's attention experts (one per FFN expert, in the same order); else none.
  std::vector<AttentionExpertsImpl*> attention;
  for (auto& l : *model->model->layers) {
    auto* a = dynamic_cast<AttentionExpertsImpl*>(l->as<DecoderLayerImpl>()->self_attn.get());
    if (a != nullptr) attention.push_back(a);
  }
  // Null experts are one more column, "null" (moe.h: the last routing keeps them as one).
  const bool null_column = model->config().num_null_experts > 0;
  const int64_t E = model->config().num_local_experts + (null_column ? 1 : 0);
  const int64_t T = c.seed_train.seq_len;

  // Expert names and the domains they stand for, from merge.json when there is one.
  ExpertSlots slots = expert_slots(folder, E);
  if (null_column) slots.names.back() = "null";
  const auto& names = slots.names;

  const Tokenizer& tok = run.tokenizer();
  nlohmann::json per_layer = nlohmann::json::array();
  for (size_t l = 0; l < layers.size(); ++l) {
    per_layer.push_back({{"layer", l},
                         {"top1", nlohmann::json::object()},
                         {"topk", nlohmann::json::object()},
                         {"entropy", nlohmann::json::object()},
                         {"mean_weight", nlohmann::json::object()},
                         {"own_expert_top1", nlohmann::json::object()}});
  }
  std::vector<std::string> domains, novel;
  nlohmann::json samples = nlohmann::json::object();
  for (const auto& [d, is_novel, windows] : analysis_windows(run, opts.novel, opts.windows)) {
    domains.push_back(d);
    if (is_novel) novel.push_back(d);
    std::vector<torch::Tensor> t1(layers.size()), tk(layers.size()), ent(layers.size()),
        mw(layers.size()), aw(attention.size());
    int64_t n = 0;
    for (int64_t r = 0; r < windows.size(0); r += 16) {
      auto batch = windows.narrow(0, r, std::min<int64_t>(16, windows.size(0) - r)).narrow(1, 0, T);
      model->forward(batch);
      n += batch.numel();
      for (size_t l = 0; l < layers.size(); ++l) {
        const Routing& ro = *layers[l]->last_routing();
        auto c1 = torch::bincount(routing_top1(ro), {}, E).to(torch::kFloat64);
        auto ck = torch::bincount(ro.experts.reshape({-1}), {}, E).to(torch::kFloat64);
        auto h =
            -(ro.probs * torch::log(ro.probs.clamp_min(1e-30))).sum(1).sum().to(torch::kFloat64);
        auto w = ro.probs.sum(0).to(torch::kFloat64);
        mw[l] = mw[l].defined() ? mw[l] + w : w;
        t1[l] = t1[l].defined() ? t1[l] + c1 : c1;
        tk[l] = tk[l].defined() ? tk[l] + ck : ck;
        ent[l] = ent[l].defined() ? ent[l] + h : h;
      }
      for (size_t l = 0; l < attention.size(); ++l) {
        const auto& g = attention[l]->last_gates();  // (B, T, E)
        auto w = g.reshape({-1, g.size(-1)}).sum(0).to(torch::kFloat64);
        aw[l] = aw[l].defined() ? aw[l] + w : w;
      }
      // The sample: the first window's first tokens, as routed within the whole window (so
      // sequence-level routing shows what evaluation saw).
      if (r == 0 && opts.sample_tokens > 0) {
        samples[d] =
            token_routing(layers, tok, batch[0].narrow(0, 0, std::min(opts.sample_tokens, T)));
      }
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      auto f1 = t1[l] / static_cast<double>(n);
      per_layer[l]["top1"][d] = to_vector(f1);
      per_layer[l]["topk"][d] = to_vector(tk[l] / static_cast<double>(n));
      per_layer[l]["entropy"][d] = ent[l].item<double>() / static_cast<double>(n);
      per_layer[l]["mean_weight"][d] = to_vector(mw[l] / static_cast<double>(n));
      if (l < attention.size()) {  // BAM: the mean soft weight of each attention expert
        per_layer[l]["attention_mean_weight"][d] = to_vector(aw[l] / static_cast<double>(n));
      }
      const auto own = own_expert_slots(slots, d);
      if (!own.empty()) {
        double f = 0;
        for (int64_t e : own) f += f1[e].item<double>();
        per_layer[l]["own_expert_top1"][d] = f;
      }
    }
  }
  nlohmann::json out = {{"model", model_dir.filename().string()},
                        {"experts", names},
                        {"domains", domains},
                        {"novel_domains", novel},
                        {"top_k", model->config().num_experts_per_tok},
                        {"model_type", name_of(model->config().model_type)},
                        {"router_mode", model->config().router_mode},
                        {"layers", per_layer}};
  if (opts.sample_tokens > 0) out["samples"] = samples;
  if (!opts.text.empty()) {
    auto ids = tok.encode(opts.text);
    if (static_cast<int64_t>(ids.size()) > std::min(opts.text_tokens, T)) {
      ids.resize(static_cast<size_t>(std::min(opts.text_tokens, T)));
    }
    BTX_CHECK(!ids.empty(), "--text gives no tokens");
    const auto x = torch::tensor(ids, torch::kInt32).to(torch::kInt64);
    model->forward(x.unsqueeze(0));
    out["tokens"] = token_routing(layers, tok, x);
  }
  return out;
}

std::string format_routing_layer(const nlohmann::json& a, int64_t layer) {
  const auto& l = a.at("layers").at(static_cast<size_t>(layer));
  const auto names = a.at("experts").get<std::vector<std::string>>();
  // SMEAR merges every expert: its table is the mean merge weights; an MoE's, the top-1 choices.
  const bool smear = a.value("model_type", "") == "smear";
  const char* matrix = smear ? "mean_weight" : "top1";
  std::string out = fmt::format("{} layer {}: {}\n", a.value("model", "?"), layer,
                                smear ? "mean merge weight of each expert per domain"
                                      : "fraction of each domain's tokens by top-1 expert");
  out += fmt::format("  {:<14}", "domain");
  for (const auto& n : names) out += fmt::format(" {:>11.11}", n);
  out += fmt::format(" {:>8} {:>6}\n", "entropy", "own");
  for (const auto& d : a.at("domains")) {
    const std::string dn = d.get<std::string>();
    out += fmt::format("  {:<14}", dn);
    for (double f : l.at(matrix).at(dn).get<std::vector<double>>())
      out += fmt::format(" {:>11.3f}", f);
    out += fmt::format(" {:>8.3f}", l.at("entropy").at(dn).get<double>());
    const auto& own = l.at("own_expert_top1");
    out += own.contains(dn) ? fmt::format(" {:>6.3f}\n", own[dn].get<double>())
                            : fmt::format(" {:>6}\n", "-");
  }
  if (l.contains("attention_mean_weight")) {  // BAM's attention experts
    out += "  mean weight of each attention expert per domain\n";
    for (const auto& d : a.at("domains")) {
      const std::string dn = d.get<std::string>();
      out += fmt::format("  {:<14}", dn);
      for (double f : l.at("attention_mean_weight").at(dn).get<std::vector<double>>())
        out += fmt::format(" {:>11.3f}", f);
      out += "\n";
    }
  }
  return out;
}

}  // namespace btx
