#include "btx/pipeline/generate.h"

#include <random>

#include "btx/util/error.h"

namespace btx {

void validate_sampling(const SamplingOptions& o) {
  BTX_CHECK(o.temperature >= 0, "temperature must be >= 0, got {}", o.temperature);
  BTX_CHECK(o.top_k >= 0, "top_k must be >= 0, got {}", o.top_k);
  BTX_CHECK(o.top_p > 0 && o.top_p <= 1, "top_p must be in (0, 1], got {}", o.top_p);
}

int64_t choose_token(const torch::Tensor& logits, const SamplingOptions& o, double u) {
  auto l = logits.to(torch::kFloat64).reshape({-1});
  if (o.temperature == 0) return l.argmax().item<int64_t>();
  auto probs = torch::softmax(l / o.temperature, 0);
  auto [sorted, order] = probs.sort(/*dim=*/0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (o.top_k > 0) keep = std::min(keep, o.top_k);
  if (o.top_p < 1) {
    // The smallest prefix whose mass reaches top_p (at least one token).
    auto mass = sorted.cumsum(0);
    const int64_t reach = (mass < o.top_p).sum().item<int64_t>() + 1;
    keep = std::min(keep, reach);
  }
  auto kept = sorted.narrow(0, 0, keep);
  auto cdf = kept.cumsum(0) / kept.sum();
  int64_t i = (cdf <= u).sum().item<int64_t>();
  i = std::min(i, keep - 1);
  return order[i].item<int64_t>();
}

GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text) {
  validate_sampling(o.sampling);
  BTX_CHECK(!prompt.empty(), "the prompt is empty (it must have at least one token)");
  BTX_CHECK(o.max_tokens >= 0, "max_tokens must be >= 0, got {}", o.max_tokens);
  const auto& c = model->config();
  BTX_CHECK(c.is_causal(),
            "this model reads the whole sequence to route (router_mode {}), so it cannot "
            "generate left to right",
            c.router_mode);
  const int64_t context = c.max_position_embeddings;
  BTX_CHECK(static_cast<int64_t>(prompt.size()) < context,
            "the prompt has {} tokens but the model's context is {} (it must leave room for at "
            "least one new token)",
            prompt.size(), context);
  torch::NoGradGuard no_grad;
  model->eval();
  const bool cached = o.use_cache && model->supports_cache();
  std::mt19937_64 rng(o.sampling.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);

  GenerateResult r;
  std::vector<int32_t> all = prompt;
  KVCache cache;
  auto ids_of = [](const std::vector<int32_t>& v, size_t from) {
    std::vector<int64_t> x(v.begin() + static_cast<std::ptrdiff_t>(from), v.end());
    return torch::tensor(x, torch::kInt64).view({1, -1});
  };
  // Text is final up to `emitted`; the rest waits while it could still begin a stop string.
  size_t emitted = 0;
  auto flush = [&](bool all_of_it) {
    size_t safe = r.text.size();
    if (!all_of_it) {
      for (const auto& s : o.stop) {
        for (size_t k = std::min(s.size() - 1, r.text.size()); k > 0; --k) {
          if (r.text.compare(r.text.size() - k, k, s, 0, k) == 0) {
            safe = std::min(safe, r.text.size() - k);
            break;
          }
        }
      }
    }
    if (safe > emitted && on_text) on_text(r.text.substr(emitted, safe - emitted));
    emitted = std::max(emitted, safe);
  };
  r.finish_reason = "length";
  while (static_cast<int64_t>(r.tokens.size()) < o.max_tokens &&
         static_cast<int64_t>(all.size()) < context) {
    torch::Tensor logits;
    if (cached) {
      logits = model->forward_cached(ids_of(all, static_cast<size_t>(cache.length)), cache);
    } else {
      logits = model->forward(ids_of(all, 0));
    }
    const double u = o.sampling.temperature > 0 ? uniform(rng) : 0.0;
    const auto next = static_cast<int32_t>(choose_token(logits[0][-1], o.sampling, u));
    if (o.stop_at_eos && next == tok.eos_id()) {
      r.finish_reason = "eos";
      break;
    }
    all.push_back(next);
    r.tokens.push_back(next);
    r.text += tok.decode({next});
    bool stopped = false;
    for (const auto& s : o.stop) {
      const auto at = s.empty() ? std::string::npos : r.text.find(s);
      if (at != std::string::npos) {
        r.text.resize(at);
        stopped = true;
      }
    }
    if (stopped) {
      r.finish_reason = "stop";
      break;
    }
    flush(false);
  }
  flush(true);
  return r;
}

}  // namespace btx
