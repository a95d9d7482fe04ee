// One extractor per corpus domain and the explicit table of domains (corpus_domain_specs).
// Files come from fixed paths or the owning package's file list (dpkg-query -L), never from
// globbing shared folders, so text of unrelated packages cannot leak in; lists are sorted and
// tools run with a fixed locale, so the same package versions give the same bytes.
#include <fmt/ranges.h>

#include <atomic>
#include <exception>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "btx/corpus/corpus_build.h"
#include "btx/corpus/corpus_text.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

RunOptions locale_env(const char* locale, std::map<std::string, std::string> extra = {}) {
  RunOptions o;
  o.env = std::move(extra);
  o.env["LC_ALL"] = locale;
  return o;
}

// Regular files (not symlinks) installed by `pkgs` whose path matches `pattern`, sorted.
std::vector<fs::path> package_files(const std::string& domain, const std::vector<std::string>& pkgs,
                                    const std::string& pattern) {
  const std::regex re(pattern);
  std::set<std::string> paths;
  for (const auto& p : pkgs) {
    const std::string list =
        check_output({"dpkg-query", "-L", p}, "corpus domain '" + domain + "'", locale_env("C"));
    for (std::string_view line : split_lines(list)) {
      const std::string path(line);
      if (std::regex_match(path, re) && fs::is_regular_file(fs::symlink_status(path))) {
        paths.insert(path);
      }
    }
  }
  BTX_CHECK(!paths.empty(), "corpus domain '{}': packages {} install no file matching {}", domain,
            fmt::join(pkgs, ", "), pattern);
  return {paths.begin(), paths.end()};
}

std::vector<std::string> dictd(const std::string& name) {
  const fs::path dir = "/usr/share/dictd";
  return read_dictd_entries(dir / (name + ".index"), dir / (name + ".dict.dz"));
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  for (size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size()) {
    s.replace(p, from.size(), to);
  }
  return s;
}

// A temporary folder removed with everything in it when the object dies.
struct ScratchDir {
  fs::path path;
  explicit ScratchDir(const std::string& tag) {
    path = temp_sibling(fs::temp_directory_path() / ("btx-" + tag));
    fs::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// --- the extractors, one per domain ----------------------------------------------------------

// The King James Bible, one chapter per document: its heading ("Genesis 1"), then one verse per
// line without its number.
std::string extract_scripture(int) {
  const std::string out = check_output({"bible", "-l100000", "gen1:1-rev22:21"},
                                       "corpus domain 'scripture'", locale_env("C"));
  DomainTextBuilder text;
  std::string chapter;
  for (std::string_view line : split_lines(out)) {
    if (line.empty()) continue;
    if (line[0] != ' ') {  // a chapter heading
      text.add(chapter);
      chapter = std::string(line) + "\n";
      continue;
    }
    const size_t verse = line.find_first_not_of(" 0123456789");
    if (verse != std::string_view::npos) chapter += std::string(line.substr(verse)) + "\n";
  }
  text.add(chapter);
  BTX_CHECK(text.documents() >= 1000, "corpus domain 'scripture': `bible` printed only {} chapters",
            text.documents());
  return std::move(text).finish();
}

std::string extract_dictionary(int) {
  DomainTextBuilder text;
  for (const auto& e : dictd("gcide")) text.add(clean_gcide_entry(e));
  return std::move(text).finish();
}

std::string extract_glossary(int) {
  DomainTextBuilder text;
  for (const char* dict : {"foldoc", "jargon"}) {
    // FOLDOC joins a headword's synonyms with "%%%".
    for (const auto& e : dictd(dict)) text.add(replace_all(strip_link_braces(e), "%%%", ", "));
  }
  return std::move(text).finish();
}

std::string extract_debian_docs(int) {
  DomainTextBuilder text;
  for (const char* f : {"/usr/share/debian-reference/debian-reference.en.txt.gz",
                        "/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz",
                        "/usr/share/doc/maint-guide/maint-guide.en.txt.gz",
                        "/usr/share/doc/debian-policy/policy.txt.gz",
                        "/usr/share/developers-reference/developers-reference.txt.gz"}) {
    text.add(read_gzip(f));
  }
  return std::move(text).finish();
}

std::string extract_python_code(int) {
  DomainTextBuilder text;
  const std::regex skip(R"(/usr/lib/python3\.11/((encodings|pydoc_data)/|(.*/)?test[^/]*/).*)");
  for (const auto& f :
       package_files("python_code", {"libpython3.11-stdlib", "libpython3.11-minimal"},
                     R"(/usr/lib/python3\.11/.*\.py)")) {
    if (!std::regex_match(f.string(), skip)) text.add(read_file(f), false);
  }
  return std::move(text).finish();
}

std::string extract_c_code(int) {
  const auto archives =
      package_files("c_code", {"glibc-source"}, R"(/usr/src/glibc/glibc-[0-9.]+\.tar\.xz)");
  const fs::path archive = archives.back();
  ScratchDir tmp("glibc");
  check_output({"tar", "-xJf", archive.string(), "-C", tmp.path.string(), "--wildcards", "*.c"},
               "corpus domain 'c_code'", locale_env("C"));
  // Tests, benchmarks and the generated character-set and locale tables are left out.
  const std::regex skip_dir(R"([^/]+/((iconvdata|benchtests|localedata)/.*|(.*/)?tests?/.*))");
  const std::regex skip_name(R"((tst|test|bug-).*|.*(tst|tests?|tester)[-_0-9.].*)");
  std::vector<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(tmp.path)) {
    if (!e.is_regular_file() || e.path().extension() != ".c" || e.file_size() >= 100 * 1024) {
      continue;
    }
    const std::string rel = fs::relative(e.path(), tmp.path).string();
    if (!std::regex_match(rel, skip_dir) &&
        !std::regex_match(e.path().filename().string(), skip_name)) {
      files.push_back(rel);
    }
  }
  std::sort(files.begin(), files.end());
  DomainTextBuilder text;
  for (const auto& f : files) text.add(strip_c_licence_comment(read_file(tmp.path / f)), false);
  return std::move(text).finish();
}

std::string extract_manpages(int jobs) {
  std::vector<fs::path> pages;
  for (const auto& f : package_files("manpages", {"manpages", "manpages-dev"},
                                     R"(/usr/share/man/man[1-8]/[^/]+\.gz)")) {
    const std::string src = read_gzip(f);
    if (src.rfind(".so ", 0) != 0) pages.push_back(f);  // ".so" stubs only point to another page
  }
  // man is slow (groff per page): render in parallel, keep the sorted order.
  std::vector<std::string> rendered(pages.size());
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mu;
  const RunOptions env = locale_env("C.UTF-8", {{"MANWIDTH", "80"}});
  auto work = [&] {
    for (size_t i; (i = next++) < pages.size();) {
      try {
        rendered[i] = check_output({"man", "--nh", "--nj", "-l", pages[i].string()},
                                   "corpus domain 'manpages'", env);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mu);
        if (!error) error = std::current_exception();
        next = pages.size();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, jobs); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  DomainTextBuilder text;
  for (const auto& r : rendered) text.add(r);
  return std::move(text).finish();
}

std::string extract_aphorisms(int) {
  DomainTextBuilder text;
  const std::regex skip(R"(.*\.(dat|u8)|.*/(art|ascii-art))");
  for (const auto& f :
       package_files("aphorisms", {"fortunes", "fortunes-min", "fortunes-bofh-excuses"},
                     R"(/usr/share/games/fortunes/[^/]+)")) {
    if (std::regex_match(f.string(), skip)) continue;
    for (const auto& cookie : split_fortunes(read_file(f))) text.add(cookie);
  }
  for (const auto& e : dictd("devil")) text.add(strip_link_braces(e));
  return std::move(text).finish();
}

std::string extract_legal(int) {
  DomainTextBuilder text;
  for (const auto& f : package_files("legal", {"base-files"}, R"(/usr/share/common-licenses/.+)")) {
    text.add(read_file(f));
  }
  for (const auto& f : package_files("legal", {"libsoftware-license-perl"},
                                     R"(/usr/share/perl5/Software/License/[^/]+\.pm)")) {
    text.add(software_license_text(read_file(f)));
  }
  for (const char* f : {"/usr/share/state/us-declaration.gz", "/usr/share/state/us-constitution.gz",
                        "/usr/share/doc/debian/social-contract.txt.gz",
                        "/usr/share/doc/debian/constitution.txt.gz"}) {
    text.add(read_gzip(f));
  }
  return std::move(text).finish();
}

// Jane Austen's six novels, in order of publication, one document each.
std::string extract_literature(int) {
  const std::string out = check_output(
      {"Rscript", "--vanilla", "-e",
       "library(janeaustenr); for (b in c('sensesensibility', 'prideprejudice', "
       "'mansfieldpark', 'emma', 'northangerabbey', 'persuasion')) writeLines(c(get(b), '\\f'))"},
      "corpus domain 'literature'", locale_env("C.UTF-8"));
  DomainTextBuilder text;
  size_t pos = 0;
  for (size_t ff; (ff = out.find("\f\n", pos)) != std::string::npos; pos = ff + 2) {
    text.add(std::string_view(out).substr(pos, ff - pos));
  }
  BTX_CHECK(text.documents() == 6, "corpus domain 'literature': expected 6 novels from R, got {}",
            text.documents());
  return std::move(text).finish();
}

}  // namespace

const std::vector<DomainSpec>& corpus_domain_specs() {
  static const std::vector<DomainSpec> specs = {
      {"scripture",
       {"bible-kjv-text", "bible-kjv"},
       "the King James Bible, one chapter per document",
       "public domain",
       false,
       &extract_scripture},
      {"dictionary",
       {"dict-gcide"},
       "GCIDE dictionary entries (Webster 1913 + WordNet)",
       "GPL-2+",
       false,
       &extract_dictionary},
      {"glossary",
       {"dict-foldoc", "dict-jargon"},
       "FOLDOC computing dictionary and the Jargon File",
       "GFDL-1.1+ (FOLDOC), public domain (Jargon)",
       false,
       &extract_glossary},
      {"debian_docs",
       {"debian-reference-en", "debian-faq", "maint-guide", "debian-policy",
        "developers-reference"},
       "Debian Reference, FAQ, New Maintainers' Guide, Policy, Developer's Reference (plain text)",
       "GPL-2+ and other DFSG-free licences",
       false,
       &extract_debian_docs},
      {"python_code",
       {"libpython3.11-stdlib", "libpython3.11-minimal"},
       "the Python 3.11 standard library sources, without tests and encodings",
       "PSF-2.0",
       false,
       &extract_python_code},
      {"c_code",
       {"glibc-source"},
       "GNU C Library .c sources under 100 KB, without tests and licence headers",
       "LGPL-2.1+",
       false,
       &extract_c_code},
      {"manpages",
       {"manpages", "manpages-dev"},
       "Linux man-pages rendered as plain text",
       "mixed free licences (BSD, Expat, Linux man-pages copyleft)",
       false,
       &extract_manpages},
      {"aphorisms",
       {"fortunes", "fortunes-min", "fortunes-bofh-excuses", "dict-devil"},
       "fortune cookies and Bierce's Devil's Dictionary",
       "mixed free licences (fortunes), public domain (Devil's Dictionary)",
       false,
       &extract_aphorisms},
      {"legal",
       {"base-files", "libsoftware-license-perl", "miscfiles", "doc-debian"},
       "software licences, the US Declaration and Constitution, Debian's social contract and "
       "constitution",
       "licence texts (verbatim copying permitted), public domain, DFSG-free",
       true,
       &extract_legal},
      {"literature",
       {"r-cran-janeaustenr"},
       "Jane Austen's six novels (R package janeaustenr)",
       "public domain",
       true,
       &extract_literature},
  };
  return specs;
}

}  // namespace btx
