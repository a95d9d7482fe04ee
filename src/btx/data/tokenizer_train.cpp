// Tokenizer training: a domain-balanced sample of the corpus is written to a temporary file and
// Debian's spm_train (sentencepiece's own trainer, run as a program: see tokenizer.h for why not
// the library) turns it into a BPE model, which is made path-free and written atomically.
#include <algorithm>
#include <cstdlib>

#include "btx/corpus/corpus.h"
#include "btx/data/shards.h"
#include "btx/data/tokenizer.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

constexpr int64_t kSampleBlockBytes = 4096;  // granularity of the training sample
constexpr size_t kMaxSentenceBytes = 2048;   // longer lines are cut before training

bool program_exists(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return fs::is_regular_file(prog);
  const char* path = std::getenv("PATH");
  std::string_view rest = path != nullptr ? path : "/usr/bin:/bin";
  while (!rest.empty()) {
    const size_t colon = std::min(rest.find(':'), rest.size());
    if (fs::is_regular_file(fs::path(rest.substr(0, colon)) / prog)) return true;
    rest.remove_prefix(std::min(colon + 1, rest.size()));
  }
  return false;
}

// Appends the lines of `block` as training sentences (no newline; long lines cut).
void append_sentences(std::string_view block, std::string& out) {
  while (!block.empty()) {
    size_t e = std::min(block.find('\n'), block.size());
    if (e > kMaxSentenceBytes) {
      e = kMaxSentenceBytes;
      while (e > 1 && (static_cast<unsigned char>(block[e]) & 0xC0) == 0x80) --e;
    }
    if (e > 0) out.append(block.substr(0, e)).push_back('\n');
    block.remove_prefix(std::min(block.size(), e < block.size() && block[e] == '\n' ? e + 1 : e));
  }
}
}  // namespace

void train_tokenizer(const TokenizerTrainOptions& opts) {
  BTX_CHECK(opts.vocab_size >= 300,
            "tokenizer vocab_size must be >= 300 (256 byte pieces + "
            "specials + characters), got {}",
            opts.vocab_size);
  BTX_CHECK(opts.sample_bytes_per_domain > 0, "tokenizer sample_bytes_per_domain must be > 0");
  BTX_CHECK(program_exists(opts.spm_train),
            "tokenizer trainer '{}' not found: install Debian's "
            "`sentencepiece` package (apt-get install sentencepiece)",
            opts.spm_train);
  const auto domains = select_domains(list_corpus(opts.corpus), opts.domains, opts.corpus);
  std::string sample;
  for (const auto& dom : domains) {
    const DomainText text = read_domain_chunks(dom, kSampleBlockBytes);
    const auto order =
        seeded_permutation(text.chunks.size(), derive_seed(opts.seed, "tokenizer/" + dom.name));
    std::vector<size_t> chosen;
    int64_t bytes = 0;
    for (size_t i = 0; i < order.size() && bytes < opts.sample_bytes_per_domain; ++i) {
      chosen.push_back(order[i]);
      bytes += static_cast<int64_t>(text.chunk(order[i]).size());
    }
    std::sort(chosen.begin(), chosen.end());  // file order: the sample reads like the source
    for (size_t i : chosen) append_sentences(text.chunk(i), sample);
  }

  const fs::path tmp = temp_sibling(opts.out_model);
  fs::create_directories(tmp);
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{tmp};
  write_file_atomic(tmp / "sample.txt", sample);
  const std::vector<std::string> argv = {
      opts.spm_train,
      "--input=" + (tmp / "sample.txt").string(),
      "--model_prefix=" + (tmp / "model").string(),
      "--model_type=bpe",
      fmt::format("--vocab_size={}", opts.vocab_size),
      "--byte_fallback=true",
      "--split_digits=true",
      "--normalization_rule_name=identity",
      "--remove_extra_whitespaces=false",
      "--add_dummy_prefix=false",
      "--allow_whitespace_only_pieces=true",
      fmt::format("--character_coverage={}", opts.character_coverage),
      fmt::format("--num_threads={}", std::max(1, opts.threads)),
      fmt::format("--max_sentence_length={}", 2 * kMaxSentenceBytes),
      "--input_sentence_size=0",
      "--shuffle_input_sentence=false",
      fmt::format("--random_seed={}", mix64(opts.seed) % 0x7FFFFFFF),
      "--unk_id=0",
      "--bos_id=1",
      "--eos_id=2",
      "--pad_id=-1",
      "--minloglevel=1",
  };
  check_output(argv, fmt::format("training tokenizer {} (vocab_size {}, {} sample bytes from {} "
                                 "domains of {})",
                                 opts.out_model.string(), opts.vocab_size, sample.size(),
                                 domains.size(), opts.corpus.string()));
  const std::string model =
      detail::strip_training_paths(read_file(tmp / "model.model"), opts.out_model);
  Tokenizer::from_bytes(model, opts.out_model);  // what we write must load
  write_file_atomic(opts.out_model, model);
}

}  // namespace btx
