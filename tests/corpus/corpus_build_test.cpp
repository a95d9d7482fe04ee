// The domain table, name resolution and the manifest / skip rule of `btx corpus build`. Nothing
// here installs packages or runs an extractor.
#include "btx/corpus/corpus_build.h"

#include <gtest/gtest.h>

#include "btx/util/error.h"
#include "btx/util/fs.h"
#include "test_util.h"

namespace btx {
namespace {

TEST(DomainSpecs, TheTenDomainsOfCorpusMd) {
  const auto& specs = corpus_domain_specs();
  std::vector<std::string> names;
  for (const auto& s : specs) {
    names.push_back(s.name);
    EXPECT_FALSE(s.packages.empty()) << s.name;
    EXPECT_FALSE(s.licence.empty()) << s.name;
    EXPECT_FALSE(s.description.empty()) << s.name;
    EXPECT_NE(s.extract, nullptr) << s.name;
    EXPECT_EQ(s.novel, s.name == "legal" || s.name == "literature") << s.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"scripture", "dictionary", "glossary", "debian_docs",
                                             "python_code", "c_code", "manpages", "aphorisms",
                                             "legal", "literature"}));
}

TEST(ResolveDomains, DefaultIsAllAndOrderIsKept) {
  EXPECT_EQ(resolve_domain_specs({}).size(), corpus_domain_specs().size());
  const auto two = resolve_domain_specs({"manpages", "scripture"});
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].name, "manpages");
  EXPECT_EQ(two[1].name, "scripture");
}

TEST(ResolveDomains, UnknownNameListsKnownOnes) {
  try {
    resolve_domain_specs({"scripture", "klingon"});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'klingon'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("python_code"), std::string::npos) << msg;
    EXPECT_NE(msg.find("literature"), std::string::npos) << msg;
  }
  EXPECT_THROW(resolve_domain_specs({"legal", "legal"}), Error);
}

TEST(BuildCorpus, UnknownDomainFailsBeforeTouchingAnything) {
  testing::TempDir dir;
  CorpusBuildOptions o;
  o.out = dir / "corpus";
  o.domains = {"nope"};
  o.install = false;
  EXPECT_THROW(build_corpus(o), Error);
  EXPECT_FALSE(fs::exists(o.out));
  o.domains = {};
  o.jobs = 0;
  EXPECT_THROW(build_corpus(o), Error);
}

DomainRecord record_for(const fs::path& dir, const std::string& name, const std::string& text) {
  write_file_atomic(dir / (name + ".txt"), text);
  DomainRecord r;
  r.name = name;
  r.bytes = text.size();
  r.sha256 = sha256_hex(text);
  r.packages = {{"pkg-a", "1.0-1"}, {"pkg-b", "2:3.4"}};
  r.licence = "public domain";
  r.novel = name == "legal";
  return r;
}

TEST(Manifest, RoundTrip) {
  testing::TempDir dir;
  EXPECT_TRUE(read_corpus_manifest(dir.path()).empty());
  std::map<std::string, DomainRecord> recs;
  recs["scripture"] = record_for(dir.path(), "scripture", "In the beginning\n");
  recs["legal"] = record_for(dir.path(), "legal", "We the People\n");
  write_corpus_manifest(dir.path(), recs);
  const auto back = read_corpus_manifest(dir.path());
  ASSERT_EQ(back.size(), 2u);
  const DomainRecord& s = back.at("scripture");
  EXPECT_EQ(s.bytes, 17u);
  EXPECT_EQ(s.sha256, sha256_hex("In the beginning\n"));
  EXPECT_EQ(s.packages, recs["scripture"].packages);
  EXPECT_EQ(s.format_version, kCorpusFormatVersion);
  EXPECT_EQ(s.licence, "public domain");
  EXPECT_TRUE(back.at("legal").novel);
  EXPECT_FALSE(s.novel);
  const std::string json = read_file(dir / "manifest.json");
  EXPECT_NE(json.find("\"format_version\": 1"), std::string::npos) << json;
  EXPECT_NE(json.find("\"file\": \"legal.txt\""), std::string::npos) << json;
}

TEST(Manifest, InvalidManifestIsAnErrorNamingIt) {
  testing::TempDir dir;
  testing::write_text(dir / "manifest.json", "{\"domains\": [{\"name\": 3}]}");
  try {
    read_corpus_manifest(dir.path());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("manifest.json"), std::string::npos) << e.what();
  }
  testing::write_text(dir / "manifest.json", "not json");
  EXPECT_THROW(read_corpus_manifest(dir.path()), Error);
}

TEST(Manifest, SkipOnlyWhenFileAndVersionsMatch) {
  testing::TempDir dir;
  const DomainRecord r = record_for(dir.path(), "glossary", "foo: a metasyntactic variable\n");
  const auto versions = r.packages;
  EXPECT_TRUE(domain_is_current(dir.path(), r, versions));

  auto newer = versions;
  newer["pkg-b"] = "2:3.5";  // a security update changes the domain's bytes: rebuild
  EXPECT_FALSE(domain_is_current(dir.path(), r, newer));
  auto more = versions;
  more["pkg-c"] = "1";
  EXPECT_FALSE(domain_is_current(dir.path(), r, more));

  DomainRecord old_format = r;
  old_format.format_version = kCorpusFormatVersion - 1;
  EXPECT_FALSE(domain_is_current(dir.path(), old_format, versions));

  // Same size, other content: the checksum catches it.
  write_file_atomic(dir / "glossary.txt", "bar: a metasyntactic variable\n");
  EXPECT_FALSE(domain_is_current(dir.path(), r, versions));
  fs::remove(dir / "glossary.txt");
  EXPECT_FALSE(domain_is_current(dir.path(), r, versions));
}

}  // namespace
}  // namespace btx
