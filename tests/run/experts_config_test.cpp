// Which experts a config asks for: one per domain, a random split into equal shares, or a custom
// list; and the config errors that name the key.
#include <gtest/gtest.h>

#include "btx/run/experts.h"
#include "btx/util/error.h"

namespace btx {
namespace {

const std::vector<std::string> kDomains = {"code", "prose", "verse"};

TEST(ResolveExperts, OnePerDomainByDefault) {
  auto c = parse_run_config("", "cfg.toml");
  auto e = resolve_experts(c, kDomains);
  ASSERT_EQ(e.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(e[i].name, kDomains[i]);
    EXPECT_EQ(e[i].domains, (std::map<std::string, double>{{kDomains[i], 1.0}}));
    EXPECT_EQ(e[i].partition.count, 1);
  }
}

TEST(ResolveExperts, RandomSplitGivesDisjointEqualShares) {
  auto c = parse_run_config("[experts]\nsplit = \"random\"\ncount = 2\n", "cfg.toml");
  auto e = resolve_experts(c, kDomains);
  ASSERT_EQ(e.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(e[i].name, "random_" + std::to_string(i));
    EXPECT_EQ(e[i].domains.size(), 3u);  // the whole mixture
    EXPECT_EQ(e[i].partition.index, i);
    EXPECT_EQ(e[i].partition.count, 2);
    // The spec survives its JSON round trip (expert.json).
    EXPECT_EQ(ExpertSpec::from_json(e[i].to_json(), "x").to_json(), e[i].to_json());
  }
  // count = 0: one expert per domain
  EXPECT_EQ(
      resolve_experts(parse_run_config("[experts]\nsplit = \"random\"\n", "c"), kDomains).size(),
      3u);
}

TEST(ResolveExperts, CustomListAndItsErrors) {
  auto c = parse_run_config(
      "[[experts.custom]]\nname = \"tech\"\ndomains = { code = 1.0, prose = 0.25 }\n"
      "[[experts.custom]]\nname = \"old\"\ndomains = { verse = 1.0 }\n",
      "cfg.toml");
  auto e = resolve_experts(c, kDomains);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].name, "tech");
  EXPECT_EQ(e[0].domains.at("prose"), 0.25);
  auto bad = parse_run_config("[[experts.custom]]\nname = \"x\"\ndomains = { legal = 1.0 }\n", "c");
  try {
    resolve_experts(bad, kDomains);
    FAIL();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("domain 'legal' has no data"), std::string::npos);
  }
  auto error_of = [](const std::string& toml) {
    try {
      parse_run_config(toml, "cfg.toml");
    } catch (const Error& err) {
      return std::string(err.what());
    }
    return std::string();
  };
  EXPECT_NE(error_of("[experts]\nsplit = \"kmeans\"\n").find("experts.split"), std::string::npos);
  EXPECT_NE(error_of("[[experts.custom]]\nname = \"a b\"\ndomains = { code = 1.0 }\n")
                .find("expert name 'a b'"),
            std::string::npos);
  EXPECT_NE(error_of("[[experts.custom]]\nname = \"a\"\ndomain = { code = 1.0 }\n")
                .find("experts.custom[0].domain"),
            std::string::npos);
  EXPECT_NE(error_of("[experts.train]\nstep = 3\n").find("experts.train.step"), std::string::npos);
}

}  // namespace
}  // namespace btx
