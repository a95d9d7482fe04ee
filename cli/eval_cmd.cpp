// `btx eval`: per-domain loss / perplexity of any model (checkpoint, merged model, ensemble) on
// token shards and novel text; with --run, on the run's own data with its settings, recorded as
// eval/<name>.json, several models at once with a comparison table.
#include <filesystem>
#include <iostream>
#include <optional>

#include "btx/analysis/results.h"
#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/eval/evaluate.h"
#include "btx/run/model_scorer.h"
#include "btx/run/run_dir.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {
// The tokenizer for novel text: --tokenizer, else the model's run's, else the one beside the
// shards (data/..).
fs::path find_tokenizer(const EvalArgs& a, const fs::path& model) {
  const fs::path beside_data = fs::path(a.data).parent_path() / "tokenizer.model";
  if (a.tokenizer.empty() && find_run_tokenizer(model).empty() && fs::exists(beside_data)) {
    return beside_data;
  }
  return model_tokenizer(model, a.tokenizer);
}

// A model named relative to the run (seed, experts/x, merged/y) or a path.
fs::path resolve_model(const EvalArgs& a, const std::string& model) {
  return ModelArg{model, a.run}.dir();
}

// A model must read every window of the evaluation: one whose context is shorter is refused,
// naming its folder and where the window length came from.
void check_window(const fs::path& model, const Scorer& s, int64_t seq_len,
                  const std::string& from) {
  BTX_CHECK(seq_len <= s.max_context(),
            "model {} reads at most {} tokens (its context) but the evaluation's windows are {} "
            "tokens ({}); give --seq-len {} to evaluate it on windows it can read (its figures "
            "are then not comparable with those of {}-token windows)",
            model.string(), s.max_context(), seq_len, from, s.max_context(), seq_len);
}

nlohmann::json evaluate_one(EvalArgs& a, const std::string& model_arg) {
  const fs::path model = resolve_model(a, model_arg);
  auto scorer = open_scorer(ModelFolder::open(model));
  const std::string name = a.name.empty() ? eval_name(model) : a.name;
  if (!a.run.empty()) {
    const RunDir run{a.run};
    const RunConfig c = load_run(run);
    EvalOptions o = run_eval_options(c, a.opts.split);
    o.model_path = model.string();
    if (a.opts.seq_len > 0) {
      o.seq_len = a.opts.seq_len;
      o.seq_len_from = "--seq-len";
    }
    check_window(model, *scorer, o.seq_len,
                 o.seq_len_from.empty()
                     ? fmt::format("the run's seq_len, {}", run.config_file().string())
                     : o.seq_len_from);
    if (a.opts.batch_size > 0) o.batch_size = a.opts.batch_size;
    o.max_tokens = a.opts.max_tokens;
    auto novel = run_novel_domains(c);
    if (!a.novel.empty()) {
      for (auto& d : select_domains(list_corpus(a.novel), a.novel_domains, a.novel)) {
        novel.push_back(std::move(d));
      }
    }
    return evaluate_in_run(run, *scorer, name, novel, o);
  }
  BTX_CHECK(!a.data.empty(), "eval: give --run DIR, or --data SHARDS");
  const ShardSet data = ShardSet::open(a.data);
  std::vector<CorpusDomain> novel;
  std::optional<Tokenizer> tok;
  if (!a.novel.empty()) {
    novel = select_domains(list_corpus(a.novel), a.novel_domains, a.novel);
    tok = Tokenizer::load(find_tokenizer(a, model));
    BTX_CHECK(tok->vocab_size() == data.vocab_size(),
              "tokenizer has {} pieces but the shards in {} were made with {}", tok->vocab_size(),
              a.data, data.vocab_size());
  }
  EvalOptions o = a.opts;
  o.model_path = model.string();
  o.seq_len_from = "--seq-len";
  if (o.seq_len == 0) {
    // The windows of the run that made the shards, when they are in one; else the model's context.
    fs::path data = fs::path(a.data).lexically_normal();
    if (data.filename().empty()) data = data.parent_path();  // "run/data/"
    const RunDir data_run{data.parent_path()};
    if (fs::exists(data_run.config_file())) {
      o.seq_len = run_eval_options(load_run(data_run), o.split).seq_len;
      o.seq_len_from = fmt::format("the seq_len of the run the shards come from, {}",
                                   data_run.config_file().string());
    } else {
      o.seq_len = scorer->max_context();
      o.seq_len_from = "the model's context";
    }
  }
  if (o.batch_size == 0) o.batch_size = 16;
  check_window(model, *scorer, o.seq_len, o.seq_len_from);
  return evaluate(*scorer, name, data, novel, tok ? &*tok : nullptr, o);
}
}  // namespace

std::vector<Command> add_eval_commands(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand(
      "eval", "Per-domain loss and perplexity of models: checkpoints, merged models, ensembles");
  CliArgs options(cmd);
  a->visit(options);
  options["--model"]->required();
  options["--split"]->check(CLI::IsMember({"train", "valid", "test"}))->capture_default_str();
  options["--max-tokens"]->capture_default_str();
  auto r = std::make_shared<ResultsArgs>();
  auto* results_cmd = app.add_subcommand(
      "results",
      "The study's results table of evaluated models (best per column marked, findings), "
      "written to results.md and results.json in the run");
  CliArgs results_options(results_cmd);
  r->visit(results_options);
  results_options["--run"]->required();
  auto results_run = [r] {
    RunDir run{r->run};
    if (!r->compare.empty()) {
      BTX_CHECK(r->compare.size() == 2, "--compare takes two models, A,B (got {})",
                r->compare.size());
      std::cout << compare_models(run, r->compare[0], r->compare[1]);
      return;
    }
    const std::vector<std::string> models = r->models.empty() ? evaluated_models(run) : r->models;
    const auto results = study_results(run, models);
    write_results(run, results);
    std::cout << results_markdown(results);
  };
  return {{results_cmd, results_run},
          {cmd, [a] {
             BTX_CHECK(a->models.size() == 1 || (a->name.empty() && a->out.empty()),
                       "--name and --out take one --model, got {}", a->models.size());
             // Before the evaluation, not after it: a folder cannot become the JSON file.
             BTX_CHECK(a->out.empty() || !std::filesystem::is_directory(a->out),
                       "--out {}: is a folder (a file name is expected)", a->out);
             std::vector<nlohmann::json> results;
             for (const auto& m : a->models) {
               results.push_back(evaluate_one(*a, m));
               if (!a->out.empty()) write_file_atomic(a->out, results.back().dump(2));
               std::cout << (a->json ? results.back().dump(2) + "\n"
                                     : format_eval_table(results.back()));
             }
             if (results.size() > 1 && !a->json) std::cout << "\n" << format_comparison(results);
           }}};
}

}  // namespace btx::cli
