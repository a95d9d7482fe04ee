// `btx generate`: text from a model, streamed as it is produced (generate/generate.h).
#include <algorithm>
#include <iostream>

#include "btx/generate/generate.h"
#include "btx/run/model_folder.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/params.h"
#include "cli/commands.h"

namespace btx::cli {

std::vector<Command> add_generate_commands(CLI::App& app) {
  struct GenerateArgs {
    ModelArg model;
    std::string prompt, prompt_file, tokenizer;
    GenerateOptions opts;
    std::vector<std::string> logit_bias;  // "ID=BIAS"
    bool no_cache = false;
  };
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand(
      "generate",
      "Generate text from a model (dense, MoE, SMEAR) or an ensemble, streamed to stdout");
  add_model_arg(cmd, a->model, "Checkpoint or ensemble folder");
  cmd->add_option("--prompt", a->prompt, "The prompt text");
  cmd->add_option("--prompt-file", a->prompt_file, "Read the prompt from this file");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.model (default: the model's run's)");
  cmd->add_option("--max-tokens", a->opts.max_tokens, "Tokens to generate at most")
      ->capture_default_str();
  cmd->add_option("--temperature", a->opts.sampling.temperature, "0: greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", a->opts.sampling.top_k, "Sample among the k most probable (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", a->opts.sampling.top_p, "Nucleus sampling mass")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", a->opts.sampling.presence_penalty,
                  "Subtracted from the logit of every token already generated (-2..2)")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", a->opts.sampling.frequency_penalty,
                  "Subtracted from a token's logit once per time it was generated (-2..2)")
      ->capture_default_str();
  cmd->add_option("--logit-bias", a->logit_bias,
                  "ID=BIAS: add BIAS (-100..100) to token ID's logit (repeat for several)");
  cmd->add_option("--seed", a->opts.sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--stop", a->opts.stop, "Stop before this string (repeat for several)");
  cmd->add_flag("--no-cache", a->no_cache, "Recompute the whole prefix for every token");
  return {
      {cmd, [a] {
         const fs::path dir = a->model.dir();
         BTX_CHECK(a->prompt.empty() != a->prompt_file.empty(),
                   "give the prompt with --prompt TEXT or --prompt-file FILE (one of them)");
         const std::string prompt = a->prompt_file.empty() ? a->prompt : read_file(a->prompt_file);
         const fs::path tok_file = model_tokenizer(dir, a->tokenizer);
         const Tokenizer tok = Tokenizer::load(tok_file);
         a->opts.use_cache = !a->no_cache;
         a->opts.sampling.logit_bias.clear();
         for (const auto& b : a->logit_bias) {
           const auto eq = b.find('=');
           const auto id = eq == std::string::npos ? std::nullopt : parse_integer(b.substr(0, eq));
           const auto bias = eq == std::string::npos ? std::nullopt : parse_real(b.substr(eq + 1));
           BTX_CHECK(id && bias && *id >= 0 && *id < tok.vocab_size(),
                     "--logit-bias '{}': expected ID=BIAS with a token id in [0, {}) and a "
                     "number, as in 13=-100",
                     b, tok.vocab_size());
           a->opts.sampling.logit_bias.emplace_back(static_cast<int32_t>(*id), *bias);
         }
         auto decoder = open_decoder(ModelFolder::open(dir), a->opts.use_cache);
         const auto r = generate(*decoder, tok, tok.encode(prompt), a->opts,
                                 [](const std::string& text) { std::cout << text << std::flush; });
         std::cout << "\n";
         std::string state;
         if (const auto s = decoder->state(); s.contains("posterior")) {
           // The ensemble's final posterior, most probable expert first.
           std::vector<std::pair<double, std::string>> p;
           for (const auto& [name, w] : s["posterior"].items()) p.emplace_back(w, name);
           std::sort(p.rbegin(), p.rend());
           state = ", posterior:";
           for (const auto& [w, name] : p) state += fmt::format(" {} {:.3f}", name, w);
         }
         std::cerr << fmt::format("[{} tokens, finish: {}{}]\n", r.tokens.size(),
                                  name_of(r.finish_reason), state);
       }}};
}

}  // namespace btx::cli
