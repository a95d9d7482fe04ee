// `btx corpus build` and `btx corpus list`: argument parsing only; the work is in
// btx/corpus/corpus_build.h (building from Debian packages) and btx/corpus/corpus.h (any folder).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <memory>

#include "btx/corpus/corpus.h"
#include "btx/corpus/corpus_build.h"
#include "cli/commands.h"

namespace btx::cli {

namespace {

void print_known_domains() {
  fmt::print("Domains that `btx corpus build` makes from Debian packages:\n");
  for (const auto& s : corpus_domain_specs()) {
    fmt::print("  {:<12} {:<5}  {}\n", s.name, s.novel ? "novel" : "train", s.description);
    fmt::print("  {:<12} {:<5}  packages: {}\n", "", "", fmt::join(s.packages, ", "));
    fmt::print("  {:<12} {:<5}  licence: {}\n", "", "", s.licence);
  }
  fmt::print("(novel: evaluation only, no expert trains on it)\n");
}

void print_folder(const fs::path& dir) {
  const auto domains = list_corpus(dir);
  uintmax_t total = 0;
  fmt::print("Domains in {}:\n", dir.string());
  for (const auto& d : domains) {
    fmt::print("  {:<16} {:>12} bytes  {:>6} file(s)\n", d.name, d.bytes, d.files.size());
    total += d.bytes;
  }
  fmt::print("  {:<16} {:>12} bytes\n", "total", total);
}

}  // namespace

std::vector<Command> add_corpus_commands(CLI::App& app) {
  auto* corpus = app.add_subcommand("corpus", "Build or inspect a multi-domain text corpus");
  corpus->require_subcommand(1);

  auto build_args = std::make_shared<CorpusBuildArgs>();
  auto* build = corpus->add_subcommand(
      "build",
      "Install Debian packages with freely licensed text and extract one DIR/<domain>.txt per "
      "domain, plus DIR/manifest.json (package versions, sha256). Unchanged domains are skipped.");
  CliArgs build_options(build);
  build_args->visit(build_options);
  build_options["--out"]->required();
  build_options["--jobs"]->check(CLI::PositiveNumber)->capture_default_str();

  auto list_dir = std::make_shared<std::string>();
  auto* list = corpus->add_subcommand(
      "list", "List the domains `corpus build` knows, or (with --dir) those of a corpus folder");
  list->add_option("--dir", *list_dir, "A corpus folder: <domain>.txt files or <domain>/ folders");

  return {
      {build,
       [build_args] {
         CorpusBuildOptions o = build_args->options;
         o.install = !build_args->no_install;
         build_corpus(o);
       }},
      {list,
       [list_dir] {
         print_known_domains();
         if (!list_dir->empty()) {
           fmt::print("\n");
           print_folder(*list_dir);
         }
       }},
  };
}

}  // namespace btx::cli
