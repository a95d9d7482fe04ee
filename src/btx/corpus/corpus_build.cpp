// The driver of `btx corpus build`: package installation (apt-get, through sudo when not root),
// installed versions (dpkg-query), the manifest and the skip-if-unchanged rule. What each domain
// extracts is in corpus_extract.cpp; this file knows no file formats.
#include "btx/corpus/corpus_build.h"

#include <fmt/ranges.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "btx/corpus/corpus.h"
#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "btx/util/subprocess.h"

namespace btx {

namespace {

// The installed version of `pkg`, or "" when it is not installed.
std::string installed_version(const std::string& pkg) {
  const RunResult r = run_process({"dpkg-query", "-W", "-f=${db:Status-Status}\t${Version}", pkg});
  if (r.exit_code != 0 || r.out.rfind("installed\t", 0) != 0) return "";
  return r.out.substr(10);
}

// apt-get reports a package it cannot find this way when the package lists are missing or stale.
bool lacks_package_lists(const std::string& apt_output) {
  for (const char* m : {"Unable to locate package", "has no installation candidate",
                        "Failed to fetch", "404  Not Found"}) {
    if (apt_output.find(m) != std::string::npos) return true;
  }
  return false;
}

void install_packages(const std::string& domain, const std::vector<std::string>& pkgs) {
  std::vector<std::string> prefix;
  if (::geteuid() != 0) prefix = {"sudo"};
  RunOptions opts;
  opts.inherit_env = true;
  opts.env["DEBIAN_FRONTEND"] = "noninteractive";
  std::vector<std::string> install = prefix;
  for (const char* a : {"apt-get", "install", "-y", "--no-install-recommends", "--no-upgrade"}) {
    install.emplace_back(a);
  }
  install.insert(install.end(), pkgs.begin(), pkgs.end());
  spdlog::info("corpus: {}: installing {}", domain, fmt::join(pkgs, " "));
  RunResult r = run_process(install, opts);
  if (r.exit_code != 0 && lacks_package_lists(r.out + r.err)) {
    spdlog::info("corpus: {}: apt-get lacks package lists; running apt-get update", domain);
    std::vector<std::string> update = prefix;
    update.insert(update.end(), {"apt-get", "update"});
    check_output(update, "corpus domain '" + domain + "'", opts);
    r = run_process(install, opts);
  }
  const std::string log = r.out + r.err;
  BTX_CHECK(r.exit_code == 0, "corpus domain '{}': `{}` failed with exit code {}: {}", domain,
            shell_join(install), r.exit_code,
            log.size() > 1500 ? "..." + log.substr(log.size() - 1500) : log);
}

// Installs what `spec` lacks (unless !install) and returns package -> installed version.
std::map<std::string, std::string> ensure_packages(const DomainSpec& spec, bool install) {
  std::vector<std::string> missing;
  for (const auto& p : spec.packages) {
    if (installed_version(p).empty()) missing.push_back(p);
  }
  if (!missing.empty()) {
    BTX_CHECK(install,
              "corpus domain '{}' needs Debian packages that are not installed: {} (install them "
              "with `apt-get install --no-install-recommends {}`, or drop --no-install)",
              spec.name, fmt::join(missing, ", "), fmt::join(missing, " "));
    install_packages(spec.name, missing);
  }
  std::map<std::string, std::string> versions;
  for (const auto& p : spec.packages) {
    versions[p] = installed_version(p);
    BTX_CHECK(!versions[p].empty(), "corpus domain '{}': package {} is still not installed",
              spec.name, p);
  }
  return versions;
}

DomainRecord record_from_json(const nlohmann::json& j) {
  DomainRecord r;
  r.name = j.at("name").get<std::string>();
  r.bytes = j.at("bytes").get<uint64_t>();
  r.sha256 = j.at("sha256").get<std::string>();
  r.packages = j.at("packages").get<std::map<std::string, std::string>>();
  r.format_version = j.at("format_version").get<int>();
  r.licence = j.value("licence", "");
  r.description = j.value("description", "");
  r.novel = j.value("novel", false);
  return r;
}

}  // namespace

std::vector<DomainSpec> resolve_domain_specs(const std::vector<std::string>& names) {
  const auto& all = corpus_domain_specs();
  if (names.empty()) return all;
  std::vector<std::string> known;
  for (const auto& s : all) known.push_back(s.name);
  std::vector<DomainSpec> out;
  std::set<std::string> seen;
  for (const auto& n : names) {
    auto it =
        std::find_if(all.begin(), all.end(), [&](const DomainSpec& s) { return s.name == n; });
    BTX_CHECK(it != all.end(), "unknown corpus domain '{}' (known domains: {})", n,
              fmt::join(known, ", "));
    BTX_CHECK(seen.insert(n).second, "corpus domain '{}' is named twice", n);
    out.push_back(*it);
  }
  return out;
}

std::map<std::string, DomainRecord> read_corpus_manifest(const fs::path& dir) {
  const fs::path path = dir / "manifest.json";
  std::map<std::string, DomainRecord> out;
  if (!fs::exists(path)) return out;
  try {
    const nlohmann::json j = nlohmann::json::parse(read_file(path));
    for (const auto& d : j.at("domains")) {
      DomainRecord r = record_from_json(d);
      out[r.name] = std::move(r);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("corpus manifest {} is not valid ({}); delete it to rebuild every domain", path.string(),
         e.what());
  }
  return out;
}

void write_corpus_manifest(const fs::path& dir,
                           const std::map<std::string, DomainRecord>& records) {
  nlohmann::json domains = nlohmann::json::array();
  for (const auto& [name, r] : records) {
    domains.push_back({{"name", r.name},
                       {"file", r.name + ".txt"},
                       {"bytes", r.bytes},
                       {"sha256", r.sha256},
                       {"packages", r.packages},
                       {"format_version", r.format_version},
                       {"licence", r.licence},
                       {"description", r.description},
                       {"novel", r.novel}});
  }
  const nlohmann::json j = {{"format_version", kCorpusFormatVersion}, {"domains", domains}};
  write_file_atomic(dir / "manifest.json", j.dump(2) + "\n");
}

bool domain_is_current(const fs::path& dir, const DomainRecord& recorded,
                       const std::map<std::string, std::string>& versions) {
  const fs::path file = dir / (recorded.name + ".txt");
  std::error_code ec;
  if (recorded.format_version != kCorpusFormatVersion || recorded.packages != versions ||
      !fs::is_regular_file(file, ec) || fs::file_size(file, ec) != recorded.bytes) {
    return false;
  }
  return sha256_file(file) == recorded.sha256;
}

void build_corpus(const CorpusBuildOptions& opts) {
  BTX_CHECK(!opts.out.empty(), "corpus build: no output folder given (--out DIR)");
  BTX_CHECK(opts.jobs >= 1, "corpus build: --jobs must be at least 1 (got {})", opts.jobs);
  const std::vector<DomainSpec> specs = resolve_domain_specs(opts.domains);
  fs::create_directories(opts.out);
  std::map<std::string, DomainRecord> records = read_corpus_manifest(opts.out);
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (const auto& spec : specs) {
    const auto t0 = Clock::now();
    const std::map<std::string, std::string> versions = ensure_packages(spec, opts.install);
    auto it = records.find(spec.name);
    if (it != records.end() && domain_is_current(opts.out, it->second, versions)) {
      spdlog::info("corpus: {}: up to date ({} bytes, same package versions), skipped", spec.name,
                   it->second.bytes);
      continue;
    }
    const auto t1 = Clock::now();
    const std::string text = spec.extract(opts.jobs);
    BTX_CHECK(!text.empty(), "corpus domain '{}': extraction produced no text", spec.name);
    BTX_CHECK(is_text(text), "corpus domain '{}': extraction produced invalid UTF-8 (a bug)",
              spec.name);
    const fs::path file = opts.out / (spec.name + ".txt");
    write_file_atomic(file, text);
    DomainRecord r;
    r.name = spec.name;
    r.bytes = text.size();
    r.sha256 = sha256_hex(text);
    r.packages = versions;
    r.licence = spec.licence;
    r.description = spec.description;
    r.novel = spec.novel;
    records[spec.name] = r;
    write_corpus_manifest(opts.out, records);  // after every domain: an interrupted build resumes
    const auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    spdlog::info("corpus: {}: {} bytes, sha256 {}..., packages {:.1f} s, extraction {:.1f} s",
                 spec.name, r.bytes, r.sha256.substr(0, 12), secs(t0, t1), secs(t1, Clock::now()));
  }
  spdlog::info("corpus: {} domain(s) in {} ({:.1f} s)", specs.size(), opts.out.string(),
               std::chrono::duration<double>(Clock::now() - start).count());
}

}  // namespace btx
