// Text clean-up used by `btx corpus build`: byte-level repair into UTF-8, document layout, and
// the small parsers for the Debian formats the domains come in (dictd dictionaries, fortune
// files, C licence headers, Perl Software::License data sections). Pure functions on strings
// (plus two file readers), so each is unit-tested by hand; no knowledge of packages or paths.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace btx {

namespace fs = std::filesystem;

// The lines of `text` without their '\n' (a final newline does not start another line).
std::vector<std::string_view> split_lines(std::string_view text);

// Valid UTF-8 out of any bytes: invalid sequences and stray bytes are dropped (like iconv -c),
// backspace overstrikes ("_\bx", "x\bx") keep the last character, "\r" and other control
// characters except tab and newline are dropped.
std::string to_clean_text(std::string_view raw);

// Strips trailing spaces of every line and blank lines at both ends; with collapse_blank_lines,
// runs of blank lines become one (prose), otherwise they are kept (code). No final newline.
std::string normalize_document(std::string_view text, bool collapse_blank_lines);

// A domain's text being assembled: documents cleaned, normalized and separated by one blank line.
class DomainTextBuilder {
 public:
  // Adds one document (empty ones are skipped).
  void add(std::string_view raw, bool collapse_blank_lines = true);
  size_t documents() const { return documents_; }
  // The whole text, ending in one newline ("" when no document was added).
  std::string finish() &&;

 private:
  std::string text_;
  size_t documents_ = 0;
};

// The whole content of a gzip file (a plain file is returned as it is, as zlib does).
std::string read_gzip(const fs::path& path);

// --- dictd (.index + .dict.dz) ---------------------------------------------------------------

// A number in dictd's base64 digits (A-Z a-z 0-9 + /, most significant first).
uint64_t dictd_b64_decode(std::string_view digits);

struct DictdRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// The byte ranges of a dictionary's entries from its .index text (lines "headword\toffset\tlen"),
// sorted by offset, duplicates merged, without the metadata entries (headwords "00-database-*",
// "00database*", "00-<name>-*") and without any range that overlaps one of those. `source` names
// the index in errors.
std::vector<DictdRange> dictd_entry_ranges(std::string_view index_text, const std::string& source);

// The entries of /usr/share/dictd/<name>.{index,dict.dz}, in file order, as raw text.
std::vector<std::string> read_dictd_entries(const fs::path& index, const fs::path& dict);

// Removes the {} of dictd cross-references ("see {foo bar}" -> "see foo bar"); whitespace just
// before a closing brace goes too (entries wrap lines inside links: "{BSOD\n  }").
std::string strip_link_braces(std::string_view text);

// One GCIDE entry made readable: `\Pro*nun"ci*a`tion\` headword blocks and source tags such as
// "[1913 Webster]" or "[WordNet 1.5 +PJC]" removed (a line left empty goes too), GCIDE's
// character codes ("[ae]", "[=e]", "[i^]") turned into Unicode, link braces stripped. Usage
// labels like "[Obs.]" stay.
std::string clean_gcide_entry(std::string_view entry);

// --- other formats ---------------------------------------------------------------------------

// The entries of a fortune file: text between lines consisting of a single "%".
std::vector<std::string> split_fortunes(std::string_view text);

// A C file without its leading licence comment (a first comment mentioning "Copyright" or
// "License"); a description before the copyright line is kept as a one-line comment.
std::string strip_c_licence_comment(std::string_view source);

// The licence text of a Software::License .pm file (its __LICENSE__ data section), with the
// {{ }} templates rendered generically: holder -> "the copyright holder", year -> "<year>",
// optional clauses kept, references to other licences' texts dropped. "" when there is none.
std::string software_license_text(std::string_view pm_source);

}  // namespace btx
