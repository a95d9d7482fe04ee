// `btx export` and `btx import`: Hugging Face checkpoints out of and into btx (hf/hf.h).
#include <iostream>

#include "btx/hf/hf.h"
#include "btx/study/study.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

std::vector<Command> add_hf_commands(CLI::App& app) {
  struct ExportArgs {
    ModelArg model;
    HfExportOptions opts;
    double max_shard_gb = 2.0;
  };
  auto e = std::make_shared<ExportArgs>();
  auto* exp = app.add_subcommand(
      "export",
      "Write a model as a Hugging Face checkpoint: dense as LlamaForCausalLM, MoE as "
      "MixtralForCausalLM (config.json, safetensors, tokenizer files, generation_config.json)");
  add_model_arg(exp, e->model, "Checkpoint folder");
  exp->add_option("--out", e->opts.out, "New folder to write")->required();
  exp->add_option("--dtype", e->opts.dtype, "float32, bfloat16 or float16")
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}))
      ->capture_default_str();
  exp->add_option("--tokenizer", e->opts.tokenizer,
                  "tokenizer.model to ship (default: the model's run's)");
  exp->add_option("--max-shard-size", e->max_shard_gb,
                  "GB per safetensors shard; larger weights are sharded with an index")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  struct ImportArgs {
    std::string hf, run, config;
    bool force = false;
  };
  auto i = std::make_shared<ImportArgs>();
  auto* imp = app.add_subcommand(
      "import",
      "Make a Hugging Face Llama checkpoint (safetensors, single or sharded, fp32/bf16/fp16, "
      "with its sentencepiece tokenizer.model) the finished seed of a new run");
  imp->add_option("--hf", i->hf, "The HF checkpoint folder")->required();
  imp->add_option("--run", i->run, "Run directory to create")->required();
  imp->add_option("--config", i->config,
                  "Run config whose [model] the checkpoint replaces (default: the tiny preset)");
  imp->add_flag("--force", i->force, "Adopt into a run folder made with another config");

  return {{exp,
           [e] {
             e->opts.model = e->model.dir();
             e->opts.max_shard_bytes = static_cast<int64_t>(e->max_shard_gb * 1e9);
             const auto r = export_hf(e->opts);
             std::cout << fmt::format("{} -> {} ({}, {} parameters, {} shard(s))\n",
                                      e->opts.model.string(), e->opts.out.string(),
                                      r["architecture"].get<std::string>(),
                                      r["parameters"].get<int64_t>(), r["shards"].get<size_t>());
           }},
          {imp, [i] {
             HfImportOptions o;
             o.hf = i->hf;
             o.run = RunDir{i->run};
             o.config = i->config.empty()
                            ? parse_run_config(default_study_config(), "the default config")
                            : load_run_config(i->config);
             o.force = i->force;
             import_hf(o);
             std::cout << fmt::format(
                 "{} is the seed of {}; next: `btx run --run {}` (branch, experts, merges)\n",
                 i->hf, i->run, i->run);
           }}};
}

}  // namespace btx::cli
