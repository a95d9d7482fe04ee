#include "btx/generate/generate.h"

#include <algorithm>

#include "btx/util/error.h"

namespace btx {

const std::vector<Named<FinishReason>>& names(FinishReason) {
  static const std::vector<Named<FinishReason>> table = {
      {FinishReason::kLength, "length"},
      {FinishReason::kStop, "stop"},
      {FinishReason::kEos, "eos"},
      {FinishReason::kCancelled, "cancelled"},
  };
  return table;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back over at most 3 continuation bytes (10xxxxxx) to the lead byte.
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const auto b = static_cast<unsigned char>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // a continuation byte: keep looking
    const size_t need = (b & 0xE0) == 0xC0   ? 2
                        : (b & 0xF0) == 0xE0 ? 3
                        : (b & 0xF8) == 0xF0 ? 4
                                             : 1;
    return back < need ? back : 0;
  }
  return 0;
}

// ---- generate ----------------------------------------------------------------------------

void validate_request(int64_t context, const std::vector<int32_t>& prompt,
                      const GenerateOptions& o) {
  validate_sampling(o.sampling);
  BTX_CHECK(!prompt.empty(), "the prompt is empty (it must have at least one token)");
  BTX_CHECK(o.max_tokens >= 0, "max_tokens must be >= 0, got {}", o.max_tokens);
  BTX_CHECK(static_cast<int64_t>(prompt.size()) < context,
            "the prompt has {} tokens but the model's context is {} (it must leave room for at "
            "least one new token)",
            prompt.size(), context);
}

Generation::Generation(const Tokenizer& tok, std::vector<int32_t> prompt, GenerateOptions o,
                       int64_t context, std::function<void(const std::string&)> on_text)
    : tok_(tok),
      all_(std::move(prompt)),
      o_(std::move(o)),
      context_(context),
      on_text_(std::move(on_text)),
      rng_(o_.sampling.seed) {
  validate_request(context_, all_, o_);
  r_.finish_reason = FinishReason::kLength;
}

bool Generation::wants_more() {
  if (ended_) return false;
  if (o_.cancel && o_.cancel->load()) {
    r_.finish_reason = FinishReason::kCancelled;
    ended_ = true;
  }
  if (static_cast<int64_t>(r_.tokens.size()) >= o_.max_tokens ||
      static_cast<int64_t>(all_.size()) >= context_) {
    ended_ = true;
  }
  return !ended_;
}

void Generation::take(const torch::Tensor& scores) {
  BTX_CHECK(!ended_, "generation: a token taken after the end");
  const double u =
      o_.sampling.temperature > 0 ? std::uniform_real_distribution<double>(0.0, 1.0)(rng_) : 0.0;
  // Penalties and the logit bias change the choice, not the log-probabilities reported.
  torch::Tensor choose_from = scores;
  if (o_.sampling.adjusts_logits()) {
    if (!counts_.defined()) counts_ = torch::zeros({scores.numel()}, torch::kFloat64);
    choose_from = adjusted_logits(scores, counts_, o_.sampling);
  }
  const auto next = static_cast<int32_t>(choose_token(choose_from, o_.sampling, u));
  if (o_.stop_at_eos && next == tok_.eos_id()) {
    r_.finish_reason = FinishReason::kEos;
    ended_ = true;
    return;
  }
  all_.push_back(next);
  r_.tokens.push_back(next);
  if (counts_.defined()) counts_.data_ptr<double>()[next] += 1;
  if (o_.logprobs >= 0) r_.logprobs.push_back(token_logprob(scores, next, o_.logprobs));
  r_.text += tok_.decode({next});
  for (const auto& s : o_.stop) {
    const auto at = s.empty() ? std::string::npos : r_.text.find(s);
    if (at != std::string::npos) {
      r_.text.resize(at);
      r_.finish_reason = FinishReason::kStop;
      ended_ = true;
    }
  }
  if (!ended_) flush(false);
}

void Generation::flush(bool all_of_it) {
  // Text is final up to `emitted_`; the rest waits while it could still begin a stop string or
  // ends inside a UTF-8 character.
  size_t safe = r_.text.size();
  if (!all_of_it) {
    safe -= utf8_incomplete_tail(r_.text);
    for (const auto& s : o_.stop) {
      for (size_t k = std::min(s.size() - 1, r_.text.size()); k > 0; --k) {
        if (r_.text.compare(r_.text.size() - k, k, s, 0, k) == 0) {
          safe = std::min(safe, r_.text.size() - k);
          break;
        }
      }
    }
  }
  if (safe > emitted_ && on_text_) on_text_(r_.text.substr(emitted_, safe - emitted_));
  emitted_ = std::max(emitted_, safe);
}

GenerateResult Generation::finish() {
  ended_ = true;
  if (r_.finish_reason != FinishReason::kCancelled) flush(true);
  return r_;
}

TokenLogprob token_logprob(const torch::Tensor& scores, int32_t token, int64_t top_n) {
  const auto lp = torch::log_softmax(scores.to(torch::kCPU, torch::kFloat64).reshape({-1}), 0);
  TokenLogprob out;
  out.token = token;
  out.logprob = lp[token].item<double>();
  if (top_n > 0) {
    const auto best = lp.topk(std::min<int64_t>(top_n, lp.size(0)));
    const auto v = std::get<0>(best).contiguous(), i = std::get<1>(best).contiguous();
    for (int64_t k = 0; k < v.size(0); ++k) {
      out.top.emplace_back(static_cast<int32_t>(i[k].item<int64_t>()), v[k].item<double>());
    }
  }
  return out;
}

std::vector<TokenLogprob> score_tokens(Decoder& d, const std::vector<int32_t>& seq, int64_t top_n) {
  torch::NoGradGuard no_grad;
  std::vector<TokenLogprob> out;
  if (seq.size() < 2) return out;
  const auto lp = d.sequence_scores(seq);  // (T, V)
  for (size_t t = 0; t + 1 < seq.size(); ++t) {
    out.push_back(token_logprob(lp[static_cast<int64_t>(t)], seq[t + 1], top_n));
  }
  return out;
}

GenerateResult generate(Decoder& d, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text) {
  torch::NoGradGuard no_grad;
  Generation g(tok, prompt, o, d.context(), on_text);
  d.reset();
  while (g.wants_more()) g.take(d.next_scores(g.sequence()));
  return g.finish();
}

GenerateResult generate(CausalLM& model, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& o,
                        const std::function<void(const std::string&)>& on_text) {
  ModelDecoder d(model, o.use_cache);
  return generate(d, tok, prompt, o, on_text);
}

}  // namespace btx
