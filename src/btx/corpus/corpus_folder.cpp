#include <algorithm>

#include "btx/corpus/corpus.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/utf8.h"

namespace btx {

bool is_text(std::string_view s) {
  return s.find('\0') == std::string_view::npos && utf8_invalid_at(s) == std::string_view::npos;
}

namespace {
void check_text_file(const fs::path& file) {
  const std::string text = read_file(file);
  const size_t nul = text.find('\0');
  BTX_CHECK(nul == std::string::npos,
            "corpus file {} is not text: byte {} is NUL (binary data, or UTF-16); convert it "
            "(e.g. iconv -f UTF-16 -t UTF-8) or remove it",
            file.string(), nul);
  const size_t bad = utf8_invalid_at(text);
  BTX_CHECK(bad == std::string::npos,
            "corpus file {} is not UTF-8 text: byte {} is {}; convert it (e.g. iconv -c -t "
            "UTF-8) or remove it",
            file.string(), bad, utf8_problem(text, bad));
}
}  // namespace

std::vector<CorpusDomain> list_corpus(const fs::path& dir) {
  BTX_CHECK(fs::is_directory(dir),
            "corpus folder {} does not exist (build one with `btx corpus "
            "build --out {}` or point to a folder with one .txt file per domain)",
            dir.string(), dir.string());
  std::vector<CorpusDomain> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string fname = e.path().filename().string();
    if (fname.empty() || fname[0] == '.' || fname == "manifest.json") continue;
    CorpusDomain d;
    if (e.is_directory()) {
      d.name = fname;
      for (const auto& f : fs::recursive_directory_iterator(e.path())) {
        if (!f.is_regular_file() || f.path().filename().string()[0] == '.') continue;
        d.files.push_back(f.path());
      }
      std::sort(d.files.begin(), d.files.end());
    } else if (e.is_regular_file() && e.path().extension() == ".txt") {
      d.name = e.path().stem().string();
      d.files.push_back(e.path());
    } else {
      continue;
    }
    for (const auto& f : d.files) {
      check_text_file(f);
      d.bytes += fs::file_size(f);
    }
    BTX_CHECK(d.bytes > 0, "corpus domain '{}' in {} is empty (no text)", d.name, dir.string());
    out.push_back(std::move(d));
  }
  BTX_CHECK(!out.empty(),
            "corpus folder {} has no domains (expected <domain>.txt files or "
            "<domain>/ sub-folders of text files)",
            dir.string());
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.name < b.name; });
  return out;
}

std::vector<CorpusDomain> select_domains(const std::vector<CorpusDomain>& all,
                                         const std::vector<std::string>& names,
                                         const fs::path& dir) {
  if (names.empty()) return all;
  std::vector<CorpusDomain> out;
  for (const auto& n : names) {
    auto it = std::find_if(all.begin(), all.end(), [&](auto& d) { return d.name == n; });
    if (it == all.end()) {
      std::vector<std::string> known;
      for (auto& d : all) known.push_back(d.name);
      fail("domain '{}' not found in corpus {} (it has: {})", n, dir.string(),
           fmt::join(known, ", "));
    }
    out.push_back(*it);
  }
  return out;
}

}  // namespace btx
