// `btx corpus build`: a real multi-domain text corpus made from Debian packages (see
// shared/data/CORPUS.md): install each domain's packages with apt-get, extract their text
// deterministically into DIR/<domain>.txt and record package versions and checksums in
// DIR/manifest.json, so that a rebuild skips what has not changed. It never downloads anything
// but Debian packages, and never edits text beyond clean-up (no sampling, no splitting).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "btx/util/args.h"

namespace btx {

namespace fs = std::filesystem;

struct DomainSpec {
  std::string name;
  std::vector<std::string> packages;  // what apt-get installs (Debian 12 names)
  std::string description;            // where the text comes from, in a few words
  std::string licence;
  bool novel = false;  // evaluation only: no expert trains on it (legal, literature)
  // Returns the domain's text: UTF-8, documents separated by a blank line, final newline.
  // `jobs` bounds the parallel subprocesses (manpages).
  std::string (*extract)(int jobs) = nullptr;
};

// All known domains, in a fixed order (the ten of CORPUS.md). Defined in corpus_extract.cpp.
const std::vector<DomainSpec>& corpus_domain_specs();

// The specs named in `names`, in that order (all of them when `names` is empty). An unknown or
// repeated name is a btx::Error listing the known ones.
std::vector<DomainSpec> resolve_domain_specs(const std::vector<std::string>& names);

struct CorpusBuildOptions {
  fs::path out;                      // the corpus folder (created)
  std::vector<std::string> domains;  // empty: all
  int jobs = 2;                      // parallel man renderers
  bool install = true;               // false: never run apt-get; a missing package is an error
};

void build_corpus(const CorpusBuildOptions& opts);

// `btx corpus build`'s arguments (util/args.h).
struct CorpusBuildArgs {
  CorpusBuildOptions options;
  bool no_install = false;  // options.install's opposite, as the flag says it
  template <typename V>
  void visit(V& v) {
    v.option("--out", options.out, "Corpus folder to write");
    v.option("--domains", options.domains,
             "Comma-separated domains (default: all; see `btx corpus list`)");
    v.option("--jobs", options.jobs, "Parallel renderers for man pages");
    v.flag("--no-install", no_install, "Never run apt-get; fail if a domain's package is missing");
  }
};

// --- DIR/manifest.json -----------------------------------------------------------------------

// Bumped whenever an extractor changes its output, so that old domain files are rebuilt.
inline constexpr int kCorpusFormatVersion = 1;

struct DomainRecord {
  std::string name;
  uint64_t bytes = 0;
  std::string sha256;
  std::map<std::string, std::string> packages;  // package -> installed version
  int format_version = kCorpusFormatVersion;
  std::string licence;
  std::string description;
  bool novel = false;
};

// The domains recorded in DIR/manifest.json (empty when there is none). A manifest that is not
// valid JSON of the expected shape is a btx::Error naming the file.
std::map<std::string, DomainRecord> read_corpus_manifest(const fs::path& dir);
// Writes DIR/manifest.json atomically (domains sorted by name).
void write_corpus_manifest(const fs::path& dir, const std::map<std::string, DomainRecord>& records);

// True when DIR/<name>.txt exists and matches `recorded` (size and sha256), the record has the
// current format version, and `versions` equal the recorded package versions.
bool domain_is_current(const fs::path& dir, const DomainRecord& recorded,
                       const std::map<std::string, std::string>& versions);

}  // namespace btx
