// `btx eval`: per-domain loss / perplexity of a checkpoint on token shards and novel text.
#include <iostream>

#include "btx/data/corpus.h"
#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/evaluate.h"
#include "btx/pipeline/run_dir.h"
#include "btx/train/checkpoint.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
struct EvalArgs {
  std::string model, data, novel, tokenizer, out, name;
  std::vector<std::string> novel_domains;
  EvalOptions opts = [] {
    EvalOptions o;
    o.seq_len = 0;
    return o;
  }();
  bool json = false;
};

// The tokenizer for novel text: --tokenizer, else the checkpoint's, else the run's (data/..).
fs::path find_tokenizer(const EvalArgs& a) {
  if (!a.tokenizer.empty()) return a.tokenizer;
  for (const fs::path& p : {fs::path(a.model) / "tokenizer.model",
                            fs::path(a.data).parent_path() / "tokenizer.model"}) {
    if (fs::exists(p)) return p;
  }
  fail("no tokenizer found for the novel domains: pass --tokenizer (looked in {} and {})", a.model,
       fs::path(a.data).parent_path().string());
}
}  // namespace

std::vector<Command> add_eval_commands(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "Per-domain loss and perplexity of a checkpoint");
  cmd->add_option("--model", a->model, "Checkpoint folder (model.safetensors + config.json)")
      ->required();
  cmd->add_option("--data", a->data, "Token shards folder (a run's data/)")->required();
  cmd->add_option("--novel", a->novel,
                  "Folder of novel domains (one .txt or sub-folder each), tokenized on the fly");
  cmd->add_option("--novel-domains", a->novel_domains, "Only these domains of --novel")
      ->delimiter(',');
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.model for --novel (default: found)");
  cmd->add_option("--split", a->opts.split, "Shard split to score")
      ->check(CLI::IsMember({"train", "valid", "test"}))
      ->capture_default_str();
  cmd->add_option("--seq-len", a->opts.seq_len,
                  "Window length T (0: the model's max_position_embeddings)");
  cmd->add_option("--batch-size", a->opts.batch_size, "Windows per forward pass")
      ->capture_default_str();
  cmd->add_option("--max-tokens", a->opts.max_tokens, "Per domain (0: the whole split)")
      ->capture_default_str();
  cmd->add_option("--name", a->name, "Model name in the output (default: the folder name)");
  cmd->add_flag("--json", a->json, "Print the result as JSON");
  cmd->add_option("--out", a->out, "Also write the JSON to this file");
  return {{cmd, [a] {
             const ShardSet data = ShardSet::open(a->data);
             std::vector<CorpusDomain> novel;
             std::optional<Tokenizer> tok;
             if (!a->novel.empty()) {
               novel = select_domains(list_corpus(a->novel), a->novel_domains, a->novel);
               tok = Tokenizer::load(find_tokenizer(*a));
               BTX_CHECK(tok->vocab_size() == data.vocab_size(),
                         "tokenizer has {} pieces but the shards in {} were made with {}",
                         tok->vocab_size(), a->data, data.vocab_size());
             }
             CausalLM model = load_model(a->model);
             BTX_CHECK(model->config().vocab_size == data.vocab_size(),
                       "model {} has vocab_size {} but the shards in {} have {}: they come from "
                       "different runs",
                       a->model, model->config().vocab_size, a->data, data.vocab_size());
             if (a->opts.seq_len == 0) a->opts.seq_len = model->config().max_position_embeddings;
             ModelScorer scorer(model);
             std::string name = a->name.empty() ? fs::path(a->model).filename().string() : a->name;
             auto result = evaluate(scorer, name, data, novel, tok ? &*tok : nullptr, a->opts);
             if (!a->out.empty()) write_file_atomic(a->out, result.dump(2));
             std::cout << (a->json ? result.dump(2) + "\n" : format_eval_table(result));
           }}};
}

}  // namespace btx::cli
