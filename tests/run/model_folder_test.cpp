// ModelFolder (run/model_folder.h): a model folder opened once. Hand-written merge.json files
// decide what a folder is (kind, method, parameters, experts, MoE slots, from_experts, the
// ensemble's typed options); the weights and the experts are loaded on first use, once, and
// checked against the sha256 the merge recorded; bad folders are errors naming the file.
#include "btx/run/model_folder.h"

#include <gtest/gtest.h>

#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "model_util.h"
#include "moe_util.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;
using testing::TempDir;
using testing::write_text;

// A checkpoint folder with `config`'s model (random weights) at `dir`; returns its sha256.
std::string write_model(const fs::path& dir, const ModelConfig& config) {
  torch::manual_seed(0);
  fs::create_directories(dir.parent_path());
  CausalLM model(config);
  save_checkpoint(dir, {&model, nullptr, nullptr, {}});
  return sha256_file(dir / "model.safetensors");
}

ModelConfig dense() {
  return testing::small_model_config(30, 8, 12, 1, 2, 2, 16);
}

TEST(ModelFolder, APlainCheckpointIsACheckpointWithoutMergeRecord) {
  TempDir dir("btx-model-folder");
  write_model(dir / "seed", dense());
  const ModelFolder f = ModelFolder::open(dir / "seed");
  EXPECT_EQ(f.kind(), ModelKind::kCheckpoint);
  EXPECT_FALSE(f.merged());
  EXPECT_EQ(f.method(), "");
  EXPECT_TRUE(f.slots().empty());
  EXPECT_TRUE(f.domain_experts().empty());
  EXPECT_EQ(f.config(), dense());
  const ModelFacts facts = f.facts();
  EXPECT_FALSE(facts.routed);
  EXPECT_TRUE(facts.causal);
  EXPECT_FALSE(facts.from_experts);
  EXPECT_NE(error_of([&] { f.merge(); }).find("has no merge.json"), std::string::npos);
  EXPECT_EQ(error_of([] { ModelFolder::open("/nonexistent/btx-model"); }),
            "model folder /nonexistent/btx-model does not exist");
}

TEST(ModelFolder, WeightsAreLoadedOnceAndSharedByEveryCopy) {
  TempDir dir("btx-model-folder");
  write_model(dir / "m", dense());
  const ModelFolder f = ModelFolder::open(dir / "m");
  const ModelFolder copy = f;
  CausalLM a = f.model();
  CausalLM b = copy.model();
  EXPECT_EQ(a.get(), b.get());  // one model, not two loads
  // Removing the files after the first load changes nothing: the folder does not read again.
  fs::remove(dir / "m" / "model.safetensors");
  EXPECT_EQ(f.model().get(), a.get());
}

TEST(ModelFolder, AnMoeMergeRecordIsTyped) {
  TempDir dir("btx-model-folder");
  write_model(dir / "merged/btx", testing::routed_config("mixtral", 2, 1, "tag"));
  write_text(dir / "merged/btx/merge.json", R"({
    "method": "tag", "kind": "checkpoint", "format_version": 2, "from_experts": true,
    "params": {"shared": "average"},
    "experts": [{"name": "code", "path": "../../experts/code", "sha256": "aa", "tokens": 100},
                {"name": "prose", "path": "../../experts/prose", "sha256": "bb", "tokens": 50}],
    "result": {"kind": "checkpoint",
               "moe_experts": [{"name": "code", "domains": ["code", "shell"]},
                               {"name": "prose", "domains": ["prose", "code"]}]}})");
  const ModelFolder f = ModelFolder::open(dir / "merged/btx");
  EXPECT_TRUE(f.merged());
  EXPECT_EQ(f.method(), "tag");
  const MergeRecord& r = f.merge();
  EXPECT_EQ(r.params.at("shared"), "average");
  ASSERT_EQ(r.experts.size(), 2u);
  EXPECT_EQ(r.experts[1].name, "prose");
  EXPECT_EQ(r.experts[1].dir, dir / "merged/btx" / "../../experts/prose");
  EXPECT_EQ(r.experts[0].tokens, 100);
  EXPECT_EQ(f.expert_names(), (std::vector<std::string>{"code", "prose"}));
  ASSERT_EQ(f.slots().size(), 2u);
  EXPECT_EQ(f.slots()[0].domains, (std::vector<std::string>{"code", "shell"}));
  // The first slot that trained on a domain is its expert.
  const std::map<std::string, int64_t> routes = {{"code", 0}, {"shell", 0}, {"prose", 1}};
  EXPECT_EQ(f.domain_experts(), routes);
  const ModelFacts facts = f.facts();
  EXPECT_TRUE(facts.routed);
  EXPECT_FALSE(facts.learned);  // tag routing follows the label
  EXPECT_TRUE(facts.from_experts);
  EXPECT_EQ(facts.method, "tag");
}

TEST(ModelFolder, OlderRecordsWithoutFromExpertsFollowTheMethod) {
  TempDir dir("btx-model-folder");
  for (const char* method : {"upcycle", "dense", "btx"}) {
    const fs::path m = dir / method;
    fs::create_directories(m);
    write_text(m / "merge.json", fmt::format(R"({{"method": "{}", "params": {{}}}})", method));
    EXPECT_EQ(ModelFolder::open(m).merge().from_experts, std::string(method) == "btx") << method;
  }
}

TEST(ModelFolder, AnEnsembleHasTypedOptionsAndChecksItsExperts) {
  TempDir dir("btx-model-folder");
  const std::string sha_a = write_model(dir / "experts/a", dense());
  write_model(dir / "experts/b", dense());
  const fs::path ens = dir / "merged/ensemble";
  fs::create_directories(ens);
  write_text(ens / "merge.json",
             fmt::format(R"({{
    "method": "ensemble", "kind": "ensemble",
    "params": {{"prior": "updating", "top-k": "1", "alpha": "0.5", "prior-windows": "4"}},
    "experts": [{{"name": "a", "path": "../../experts/a", "sha256": "{}"}},
                {{"name": "b", "path": "../../experts/b", "sha256": "{}"}}]}})",
                         sha_a, sha256_file(dir / "experts/b/model.safetensors")));
  const ModelFolder f = ModelFolder::open(ens);
  EXPECT_EQ(f.kind(), ModelKind::kEnsemble);
  EXPECT_FALSE(f.is_checkpoint());
  const EnsembleOptions& o = f.ensemble_options();
  EXPECT_EQ(o.prior, EnsemblePrior::kUpdating);
  EXPECT_EQ(o.top_k, 1);
  EXPECT_DOUBLE_EQ(o.alpha, 0.5);
  EXPECT_EQ(o.prior_windows, 4);
  const ModelFacts facts = f.facts();
  EXPECT_TRUE(facts.ensemble);
  EXPECT_EQ(facts.ensemble_top_k, 1);
  EXPECT_FALSE(facts.routed);
  const auto& experts = f.experts();
  ASSERT_EQ(experts.size(), 2u);
  EXPECT_EQ(f.experts()[0].get(), experts[0].get());  // loaded once

  // An expert retrained since the merge is noticed.
  write_model(dir / "experts/c", testing::small_model_config(30, 8, 12, 2, 2, 2, 16));
  fs::copy_file(dir / "experts/c/model.safetensors", dir / "experts/a/model.safetensors",
                fs::copy_options::overwrite_existing);
  EXPECT_NE(
      error_of([&] {
        ModelFolder::open(ens).experts();
      }).find("expert 'a' (" + (ens / "../../experts/a").string() + ") changed since the merge"),
      std::string::npos);
  // A load that fails on the second expert keeps nothing of the first: once the file is back,
  // the experts are the two, not the first twice.
  fs::copy_file(dir / "experts/b/model.safetensors", dir / "b.safetensors");
  fs::copy_file(dir / "experts/c/model.safetensors", dir / "experts/b/model.safetensors",
                fs::copy_options::overwrite_existing);
  fs::copy_file(dir / "experts/c/model.safetensors", dir / "experts/a/model.safetensors",
                fs::copy_options::overwrite_existing);
  write_model(dir / "experts/a2", dense());  // the same seed: a's weights as merged
  fs::copy_file(dir / "experts/a2/model.safetensors", dir / "experts/a/model.safetensors",
                fs::copy_options::overwrite_existing);
  const ModelFolder partly = ModelFolder::open(ens);
  EXPECT_NE(error_of([&] { partly.experts(); }).find("expert 'b'"), std::string::npos);
  fs::copy_file(dir / "b.safetensors", dir / "experts/b/model.safetensors",
                fs::copy_options::overwrite_existing);
  EXPECT_EQ(partly.experts().size(), 2u);
}

TEST(ModelFolder, MalformedRecordsAreErrorsNamingTheFile) {
  TempDir dir("btx-model-folder");
  const fs::path m = dir / "m";
  fs::create_directories(m);
  const std::string file = (m / "merge.json").string();
  write_text(m / "merge.json", R"({"method": "x", "kind": "mixture"})");
  EXPECT_EQ(error_of([&] { ModelFolder::open(m); }),
            file +
                ": unknown model kind 'mixture' (expected checkpoint, ensemble, "
                "posterior-average or stitched)");
  write_text(m / "merge.json", R"({"method": "ensemble", "kind": "ensemble", "params":
    {"prior": "cached", "top-k": "two", "alpha": "0.3", "prior-windows": "16"}})");
  EXPECT_EQ(error_of([&] { ModelFolder::open(m); }),
            file + ": malformed parameter in merge.json (--top-k 'two': expected an integer >= 0)");
  write_text(m / "merge.json", R"({"method": "ensemble", "kind": "ensemble", "params": {}})");
  EXPECT_EQ(error_of([&] { ModelFolder::open(m); }),
            file + ": malformed merge.json (no parameter 'prior')");
  // A parameter declared after the merge was made (here the cluster prior's) takes its default.
  write_text(m / "merge.json", R"({"method": "ensemble", "kind": "ensemble", "params":
    {"prior": "updating", "top-k": "0", "alpha": "0.3", "prior-windows": "16"}})");
  const ModelFolder old = ModelFolder::open(m);
  EXPECT_EQ(old.ensemble_options().prior, EnsemblePrior::kUpdating);
  EXPECT_DOUBLE_EQ(old.ensemble_options().temperature, 0.1);
  EXPECT_EQ(old.ensemble_options().cluster_model, "");
  write_text(m / "merge.json", R"({"method": "average", "experts": [{"name": "a"}]})");
  EXPECT_NE(error_of([&] { ModelFolder::open(m); }).find(file + ": malformed merge.json ("),
            std::string::npos);
  // A stitched model whose record names no hub, or a hub that is not there.
  write_text(m / "merge.json", R"({"method": "bts", "kind": "stitched", "result": {}})");
  const ModelFolder no_hub = ModelFolder::open(m);
  EXPECT_NE(error_of([&] {
              no_hub.stitched();
            }).find(file + ": malformed merge.json for a stitched model ("),
            std::string::npos);
  write_text(m / "merge.json", R"({"method": "bts", "kind": "stitched", "result":
    {"hub": {"path": "../nowhere", "sha256": "00"}, "stitch_every": 2}})");
  EXPECT_EQ(error_of([&] { ModelFolder::open(m).stitched(); }),
            file + ": its hub is missing (looked for " +
                (m / "../nowhere/model.safetensors").string() + ")");
}

TEST(ModelFolder, KindsHaveOneNameEach) {
  for (ModelKind k : {ModelKind::kCheckpoint, ModelKind::kEnsemble, ModelKind::kPosteriorAverage,
                      ModelKind::kStitched}) {
    EXPECT_EQ(parse_named<ModelKind>(name_of(k), "kind"), k);
  }
  EXPECT_EQ(name_list<ModelKind>(), "checkpoint, ensemble, posterior-average, stitched");
  EXPECT_EQ(error_of([] { parse_named<ModelKind>("soup", "merge.json kind"); }),
            "merge.json kind: 'soup' is not one of checkpoint, ensemble, posterior-average, "
            "stitched");
}

}  // namespace
}  // namespace btx
