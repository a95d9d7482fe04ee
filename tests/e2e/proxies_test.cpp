// MetaMoE's proxies end to end at tiny size: `btx proxies` picks, for each expert, documents of a
// public pool (fresh text of the three kinds, never trained on) by the expert's likelihood over
// the seed's and a DPP over its hidden states, writes them as a corpus with one domain per
// expert and their shards; `btx finetune --data` trains a router on those shards alone. Bad
// requests are errors that leave nothing.
#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/model/moe.h"
#include "btx/run/experts.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class ProxiesTest : public testing::ForestTest<ProxiesTest> {};

TEST_F(ProxiesTest, EachExpertGetsThePoolsTextOfItsKindAndARouterTrainsOnIt) {
  RunDir run = fresh_run("proxies");
  const std::string r_ = " --run " + run.root.string();
  // The pool: new text of each kind (another generator seed), named so no expert owns it.
  const fs::path pool = run.root.parent_path() / "pool";
  const char* kinds[] = {"prose_like", "code_like", "verse_like"};
  for (int d = 0; d < 3; ++d)
    testing::write_text(pool / (std::string(kinds[d]) + ".txt"),
                        testing::tiny_domain_text(d, 300'000, 99));
  const fs::path out = run.root / "proxies";
  auto r = run_btx("proxies" + r_ + " --pool " + pool.string() + " --per-expert 24" + " --out " +
                   out.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto manifest = read_json_file(out / "manifest.json");
  const std::map<std::string, std::string> own = {
      {"code", "code_like"}, {"prose", "prose_like"}, {"verse", "verse_like"}};
  for (const auto& [expert, kind] : own) {
    const auto& docs = manifest["proxies"][expert];
    ASSERT_EQ(docs.size(), 24u) << expert;
    int64_t mine = 0;
    std::set<int64_t> chunks;
    for (const auto& d : docs) {
      mine += d["source"] == kind;
      if (d["source"] == kind) chunks.insert(d["chunk"].get<int64_t>());
    }
    // Most of an expert's proxies are text of its own kind, none twice.
    EXPECT_GT(mine, 12) << expert << " " << docs.dump();
    EXPECT_EQ(static_cast<int64_t>(chunks.size()), mine) << expert;
    EXPECT_TRUE(fs::exists(out / "corpus" / (expert + ".txt")));
  }
  ASSERT_TRUE(fs::exists(out / "data/manifest.json"));

  // A router trained on the proxies alone: only the router moves.
  ASSERT_EQ(run_btx("merge" + r_ + " --method btx").code, 0);
  const auto before = load_safetensors(run.root / "merged/btx/model.safetensors").tensors;
  r = run_btx("finetune" + r_ + " --model merged/btx --train router --steps 4 --data " +
              (out / "data").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto after = load_safetensors(run.root / "merged/btx/model.safetensors").tensors;
  EXPECT_FALSE(torch::equal(after.at(moe_router_name(0)), before.at(moe_router_name(0))));
  EXPECT_TRUE(
      torch::equal(after.at(moe_ffn_name(0, 1, "w1")), before.at(moe_ffn_name(0, 1, "w1"))));

  // Bad requests: nothing is written.
  r = run_btx("proxies" + r_ + " --pool " + pool.string() + " --per-expert 100000 --out " +
              (run.root / "bad").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("fewer than --per-expert 100000"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "bad"));
  r = run_btx("proxies" + r_ + " --pool " + pool.string() + " --temperature 0 --out " +
              (run.root / "bad").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--temperature must be > 0"), std::string::npos) << r.output;
  r = run_btx("finetune" + r_ + " --model merged/btx --data " + (run.root / "nowhere").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("not a data folder"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace btx
