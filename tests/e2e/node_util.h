// Helpers for the e2e tests that drive real third-party software written in JavaScript
// (tests/node: npm packages at pinned versions, installed by scripts/test.sh), and btx's own
// per-token log-probabilities to compare theirs with.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "btx/data/tokenizer.h"
#include "btx/generate/decoder.h"
#include "btx/generate/generate.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "test_util.h"

namespace btx::testing {

// Runs tests/node/SCRIPT on `request` and returns the JSON it prints.
inline nlohmann::json run_node(const std::string& script, const nlohmann::json& request,
                               const fs::path& tmp) {
  const fs::path node_dir = fs::path(BTX_SOURCE_DIR) / "tests" / "node";
  if (!fs::exists(node_dir / "node_modules")) {
    ADD_FAILURE() << node_dir << "/node_modules is missing: scripts/test.sh installs it (npm ci)";
    return nullptr;
  }
  static int counter = 0;
  const fs::path req = tmp / fmt::format("node-request-{}.json", counter);
  const fs::path out = tmp / fmt::format("node-output-{}.txt", counter++);
  write_text(req, request.dump());
  const std::string cmd =
      "node " + (node_dir / script).string() + " " + req.string() + " > " + out.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  const std::string text = read_file(out);
  if (WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << script << " failed:\n" << text;
    return nullptr;
  }
  // The JSON is the last line (a runtime may log above it).
  const auto nl = text.find_last_of('\n', text.size() - 2);
  return nlohmann::json::parse(nl == std::string::npos ? text : text.substr(nl + 1));
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

// btx's log p(ids[t+1] | ids[..t]) for every t, from the model's own forward pass.
inline std::vector<double> btx_scores(const fs::path& model_dir, const std::vector<int32_t>& ids) {
  torch::NoGradGuard no_grad;
  CausalLM m = load_model(model_dir);
  m->eval();
  const auto x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  const auto lp = torch::log_softmax(m->forward(x)[0].to(torch::kFloat64), -1);
  std::vector<double> out;
  for (size_t t = 0; t + 1 < ids.size(); ++t) out.push_back(lp[t][ids[t + 1]].item<double>());
  return out;
}

inline double max_abs_diff(const std::vector<double>& a, const nlohmann::json& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    d = std::max(d, std::abs(a[i] - b[i].get<double>()));
  }
  return d;
}

// What llama.cpp makes of a GGUF export of the model in `model_dir`: the token ids of `texts`,
// greedy continuations of `prompts` (`new_tokens` each), and the scores of each prompt followed
// by btx's own greedy continuation (btx_greedy, sequences), to compare with btx's.
struct LlamaCppRun {
  nlohmann::json out;
  std::vector<std::vector<int32_t>> btx_greedy;  // btx's continuation of each prompt
  std::vector<std::vector<int32_t>> sequences;   // prompt + btx's continuation
};
inline LlamaCppRun run_llama_cpp(const fs::path& model_dir, const fs::path& gguf,
                                 const Tokenizer& tok, const std::vector<std::string>& texts,
                                 const std::vector<std::string>& prompts, int new_tokens,
                                 const fs::path& tmp) {
  LlamaCppRun r;
  auto decoder = open_decoder(ModelFolder::open(model_dir), true);
  GenerateOptions o;
  o.max_tokens = new_tokens;
  o.sampling.temperature = 0;
  o.stop_at_eos = false;
  for (const auto& p : prompts) {
    const auto prompt = tok.encode(p);
    r.btx_greedy.push_back(generate(*decoder, tok, prompt, o, nullptr).tokens);
    auto seq = prompt;
    seq.insert(seq.end(), r.btx_greedy.back().begin(), r.btx_greedy.back().end());
    r.sequences.push_back(seq);
  }
  r.out = run_node("llama_cpp.mjs",
                   {{"model", gguf.string()},
                    {"texts", texts},
                    {"prompts", prompts},
                    {"max_tokens", new_tokens},
                    {"sequences", r.sequences},
                    {"special", tok.is_hf()}},
                   tmp);
  return r;
}

}  // namespace btx::testing
