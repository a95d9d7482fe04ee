// A corpus is a folder with one domain per entry: `<domain>.txt`, or a sub-folder `<domain>/`
// of text files (each file one document). `btx corpus build` makes such a folder from Debian's
// packages (see CORPUS.md); any folder of that shape works as well.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace btx {

namespace fs = std::filesystem;

struct CorpusDomain {
  std::string name;
  std::vector<fs::path> files;  // sorted; one document each (a .txt domain has one file)
  uintmax_t bytes = 0;
};

// Lists and validates the domains of a corpus folder, sorted by name. Throws btx::Error naming
// the folder or file when: the folder is missing, has no domain, a domain has no text, or a file
// is binary (NUL bytes or invalid UTF-8). Hidden entries and `manifest.json` are ignored.
std::vector<CorpusDomain> list_corpus(const fs::path& dir);

// Keeps only `names` (in that order); an unknown name is an error that lists the known ones.
std::vector<CorpusDomain> select_domains(const std::vector<CorpusDomain>& all,
                                         const std::vector<std::string>& names,
                                         const fs::path& dir);

// True when `text` is valid UTF-8 without NUL bytes.
bool is_text(std::string_view text);

}  // namespace btx
