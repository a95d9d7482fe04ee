// `btx export` and `btx import`: Hugging Face checkpoints (hf/hf.h) and GGUF files
// (hf/gguf_export.h) out of btx, Hugging Face Llamas into it.
#include <iostream>

#include "btx/hf/gguf_export.h"
#include "btx/hf/hf.h"
#include "btx/study/study.h"
#include "btx/util/error.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {

// --dtype in either spelling (float16 / f16), as each format names it.
std::string hf_dtype(const std::string& d) {
  if (d == "f32") return "float32";
  if (d == "f16") return "float16";
  if (d == "bf16") return "bfloat16";
  BTX_CHECK(d == "float32" || d == "float16" || d == "bfloat16",
            "--dtype '{}': a Hugging Face export is written in float32, bfloat16 or float16 (q8_0 "
            "is for --format gguf)",
            d);
  return d;
}
std::string gguf_dtype(const std::string& d) {
  if (d == "float32") return "f32";
  if (d == "float16") return "f16";
  if (d == "bfloat16") return "bf16";
  return d;  // checked by export_gguf
}

}  // namespace

std::vector<Command> add_hf_commands(CLI::App& app) {
  struct ExportArgs {
    ModelArg model;
    HfExportOptions opts;
    std::string format = "hf", dtype, chat_template, name;
    double max_shard_gb = 2.0;
  };
  auto e = std::make_shared<ExportArgs>();
  auto* exp = app.add_subcommand(
      "export",
      "Write a model for other tools: --format hf (default), a Hugging Face checkpoint (dense as "
      "its base's class: Llama, Mistral, Qwen2, Qwen3; MoE as Mixtral or Qwen3-MoE; config.json, "
      "safetensors, the tokenizer's files (a tokenizer.json as it came), tokenizer_config.json "
      "with the chat template, generation_config.json), or --format gguf, one GGUF file for "
      "llama.cpp and Ollama (llama, qwen2, qwen3 or qwen3moe; MoEs with their experts; the "
      "tokenizer and chat template inside)");
  add_model_arg(exp, e->model, "Checkpoint folder");
  exp->add_option("--out", e->opts.out, "New folder (hf) or file (gguf) to write")->required();
  exp->add_option("--format", e->format, "hf or gguf")
      ->check(CLI::IsMember({"hf", "gguf"}))
      ->capture_default_str();
  exp->add_option("--dtype", e->dtype,
                  "Weights' type: hf float32 (default), bfloat16 or float16; gguf f32 (default), "
                  "f16, bf16 or q8_0 (8-bit blocks; norms and routers stay f32)");
  exp->add_option("--tokenizer", e->opts.tokenizer,
                  "tokenizer.json or tokenizer.model to ship (default: the model's run's)");
  exp->add_option("--chat-template", e->chat_template,
                  "plain ('User: ...\\n\\nAssistant:'), chatml, none, a JSON template file "
                  "(docs/interop.md), or a model's tokenizer_config.json or .jinja file (default: "
                  "a Hugging Face tokenizer's own, as it came; plain beside a tokenizer.model)");
  exp->add_option("--name", e->name, "gguf: general.name (default: the model folder's name)");
  exp->add_option("--max-shard-size", e->max_shard_gb,
                  "hf: GB per safetensors shard; larger weights are sharded with an index")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  struct ImportArgs {
    std::string hf, run, config;
    bool force = false;
  };
  auto i = std::make_shared<ImportArgs>();
  auto* imp = app.add_subcommand(
      "import",
      "Make a Hugging Face checkpoint (LlamaForCausalLM, e.g. Llama 2/3.x and SmolLM2; "
      "MistralForCausalLM; Qwen2ForCausalLM, e.g. Qwen2.5; Qwen3ForCausalLM; safetensors, single "
      "or sharded, fp32/bf16/fp16, with its tokenizer.json or tokenizer.model) the finished seed "
      "of a new run");
  imp->add_option("--hf", i->hf, "The HF checkpoint folder")->required();
  imp->add_option("--run", i->run, "Run directory to create")->required();
  imp->add_option("--config", i->config,
                  "Run config whose [model] the checkpoint replaces (default: the tiny preset)");
  imp->add_flag("--force", i->force, "Adopt into a run folder made with another config");

  return {{exp,
           [e] {
             std::optional<ChatTemplate> chat;  // none: the tokenizer's own (or plain)
             if (!e->chat_template.empty()) chat = load_chat_template(e->chat_template);
             if (e->format == "gguf") {
               GgufExportOptions o;
               o.model = e->model.dir();
               o.tokenizer = e->opts.tokenizer;
               o.out = e->opts.out;
               o.dtype = gguf_dtype(e->dtype.empty() ? "f32" : e->dtype);
               o.name = e->name;
               o.chat_template = chat;
               const auto r = export_gguf(o);
               std::cout << fmt::format("{} -> {} ({}, {}, {} parameters, {} tensors, {} bytes)\n",
                                        o.model.string(), o.out.string(),
                                        r["architecture"].get<std::string>(), o.dtype,
                                        r["parameters"].get<int64_t>(), r["tensors"].get<size_t>(),
                                        r["bytes"].get<int64_t>());
               return;
             }
             BTX_CHECK(e->name.empty(), "--name is for --format gguf");
             e->opts.model = e->model.dir();
             e->opts.dtype = hf_dtype(e->dtype.empty() ? "float32" : e->dtype);
             e->opts.chat_template = chat;
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
