#include <algorithm>

#include "btx/corpus/corpus.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"

namespace btx {

bool is_text(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0) return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += len;
  }
  return true;
}

namespace {
void check_text_file(const fs::path& file) {
  const std::string text = read_file(file);
  BTX_CHECK(is_text(text),
            "corpus file {} is not UTF-8 text (binary data or another encoding); convert it "
            "(e.g. iconv -c -t UTF-8) or remove it",
            file.string());
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
