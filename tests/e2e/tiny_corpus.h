// A tiny three-domain corpus that tests make for themselves: structured text (a small grammar
// per domain), so a model that learns anything beats the unigram entropy clearly.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "e2e_util.h"
#include "test_util.h"

namespace btx::testing {

inline std::string tiny_domain_text(int domain, size_t bytes, uint32_t seed) {
  std::mt19937 rng(seed + 101 * domain);
  auto pick = [&](std::initializer_list<const char*> words) {
    return std::string(*(words.begin() + rng() % words.size()));
  };
  std::string out;
  while (out.size() < bytes) {
    switch (domain) {
      case 0:  // plain sentences
        out += "the " + pick({"quick", "lazy", "old", "young", "brave"}) + " " +
               pick({"fox", "dog", "king", "river", "bird"}) + " " +
               pick({"jumps over", "looks at", "runs past", "sings to"}) + " the " +
               pick({"hill", "moon", "garden", "tower"}) + ".\n";
        break;
      case 1: {  // code
        const int n = static_cast<int>(rng() % 50);
        out += "def f_" + std::to_string(n) + "(x):\n    return x " + pick({"+", "*", "-"}) + " " +
               std::to_string(n) + "\n\n";
        break;
      }
      default:  // verses
        out += std::to_string(1 + rng() % 30) + ":" + std::to_string(1 + rng() % 40) + " And " +
               pick({"Moses", "Aaron", "David", "Ruth"}) + " said unto " +
               pick({"the people", "the LORD", "his sons"}) + ", " +
               pick({"Behold", "Go forth", "Hear this"}) + ".\n";
    }
  }
  return out;
}

// Writes <dir>/{prose,code,verse}.txt, `bytes` each; returns dir.
inline std::filesystem::path make_tiny_corpus(const std::filesystem::path& dir, size_t bytes,
                                              uint32_t seed = 7) {
  const char* names[] = {"prose", "code", "verse"};
  for (int d = 0; d < 3; ++d)
    write_text(dir / (std::string(names[d]) + ".txt"), tiny_domain_text(d, bytes, seed));
  return dir;
}

// A run config for that corpus: a very small model that trains in seconds.
inline std::string tiny_run_config(const std::filesystem::path& corpus, int steps,
                                   int expert_steps = 30) {
  return "name = \"tiny-test\"\nrandom_seed = 3\n"
         "[corpus]\ndir = \"" +
         corpus.string() +
         "\"\ndomains = [\"code\", \"prose\", \"verse\"]\n"
         "[tokenizer]\nvocab_size = 320\nsample_bytes_per_domain = 60000\n"
         "[data]\ntrain_tokens = 30000\nvalid_tokens = 3000\ntest_tokens = 3000\nchunk_bytes = "
         "1024\n"
         "[model]\nhidden_size = 48\nintermediate_size = 96\nnum_hidden_layers = 2\n"
         "num_attention_heads = 4\nnum_key_value_heads = 2\nmax_position_embeddings = 64\n"
         "[seed]\nsteps = " +
         std::to_string(steps) +
         "\nbatch_size = 8\nseq_len = 32\n"
         "lr = 0.01\nmin_lr = 0.001\nwarmup_steps = 10\neval_every = 20\neval_tokens = 1000\n"
         "log_every = 10\ncheckpoint_every = 20\n"
         "[experts.train]\nsteps = " +
         std::to_string(expert_steps) +
         "\nbatch_size = 8\nseq_len = 32\nlr = 0.005\nmin_lr = 0.0005\nwarmup_steps = 5\n"
         "eval_every = 10\neval_tokens = 500\nlog_every = 5\ncheckpoint_every = 10\n"
         "[finetune]\nsteps = 8\nbatch_size = 8\nseq_len = 32\nlr = 0.003\nmin_lr = 0.0003\n"
         "warmup_steps = 2\neval_every = 4\neval_tokens = 500\nlog_every = 1\n"
         "checkpoint_every = 4\n";
}

// A trained forest under dir/trained: seed (40 steps), one expert per domain (30 steps each).
// Returns "" or the failing command with its output.
inline std::string make_trained_forest(const std::filesystem::path& dir) {
  auto corpus = make_tiny_corpus(dir / "corpus", 80'000);
  write_text(dir / "run.toml", tiny_run_config(corpus, 40, 30));
  const std::string run = (dir / "trained").string();
  for (const std::string& cmd : {"seed --config " + (dir / "run.toml").string() + " --run " + run,
                                 "branch --run " + run, "launch --run " + run + " --jobs 2"}) {
    auto r = run_btx(cmd);
    if (r.code != 0) return cmd + "\n" + r.output;
  }
  return "";
}

// Overwrites the weights of experts `others` of a run with those of expert `source` (same
// training state), for tests of "merging N identical experts gives the original back".
inline void make_experts_identical(const std::filesystem::path& run, const std::string& source,
                                   const std::vector<std::string>& others) {
  const auto from = run / "experts" / source / "model.safetensors";
  for (const auto& o : others) {
    std::filesystem::copy_file(from, run / "experts" / o / "model.safetensors",
                               std::filesystem::copy_options::overwrite_existing);
  }
}

}  // namespace btx::testing
