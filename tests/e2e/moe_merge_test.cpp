// BTX end to end at tiny size: `merge --method btx` / `upcycle` build MoE checkpoints from the
// trained experts (identical experts give the dense model back for any router; the centroid
// router points each domain's mean hidden state at its own expert); `finetune` trains them in
// place, all parameters, the routers only or the routers and shared layers, logs load balancing and
// usage, and resumes exactly.
#include <gtest/gtest.h>

#include "btx/io/safetensors.h"
#include "btx/merge/moe_build.h"
#include "btx/model/attention_experts.h"
#include "btx/model/moe.h"
#include "btx/model/param_roles.h"
#include "btx/run/experts.h"
#include "btx/run/run_dir.h"
#include "btx/train/checkpoint.h"
#include "e2e_util.h"
#include "forest_fixture.h"

namespace btx {
namespace {

using testing::run_btx;

class MoeMergeTest : public testing::ForestTest<MoeMergeTest> {};

TEST_F(MoeMergeTest, IdenticalExpertsGiveTheDenseModelBack) {
  RunDir run = fresh_run("identical");
  const fs::path code = expert_dir(run, "code");
  testing::make_experts_identical(run.root, "code", {"prose", "verse"});
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& args :
       {std::string("--method btx"), std::string("--method btx --router-init centroid --name c"),
        std::string("--method btx --router soft --name soft"),
        std::string("--method upcycle --top-k 1")}) {
    auto r = run_btx("merge" + r_ + " " + args);
    ASSERT_EQ(r.code, 0) << args << "\n" << r.output;
  }
  torch::manual_seed(0);
  auto x = torch::randint(0, 320, {2, 20});
  torch::NoGradGuard ng;
  auto dense = load_model(code);
  dense->eval();
  auto seed = load_model(run.seed());
  seed->eval();
  for (const char* m : {"btx", "c", "soft"}) {
    auto moe = load_model(run.root / "merged" / m);
    moe->eval();
    EXPECT_TRUE(moe->config().is_moe());
    EXPECT_EQ(moe->config().num_local_experts, 3);
    EXPECT_TRUE(torch::allclose(moe->forward(x), dense->forward(x), 1e-4, 1e-5)) << m;
  }
  auto up = load_model(run.root / "merged/upcycle");
  up->eval();
  EXPECT_TRUE(torch::allclose(up->forward(x), seed->forward(x), 1e-4, 1e-5));
}

TEST_F(MoeMergeTest, SharedLayersFromTheSeedOrTheAverage) {
  RunDir run = fresh_run("shared");
  const std::string r_ = " --run " + run.root.string();
  ASSERT_EQ(run_btx("merge" + r_ + " --method btx --shared seed --name s").code, 0);
  ASSERT_EQ(run_btx("merge" + r_ + " --method btx --name a").code, 0);
  ASSERT_EQ(run_btx("merge" + r_ + " --method average").code, 0);
  const auto seed = load_safetensors(run.seed() / "model.safetensors").tensors;
  const auto avg = load_safetensors(run.root / "merged/average/model.safetensors").tensors;
  const auto s = load_safetensors(run.root / "merged/s/model.safetensors").tensors;
  const auto a = load_safetensors(run.root / "merged/a/model.safetensors").tensors;
  int shared = 0;
  for (const auto& [name, t] : s) {
    if (name.find("block_sparse_moe") != std::string::npos) continue;
    ++shared;
    EXPECT_TRUE(torch::equal(t, seed.at(name))) << name;
    EXPECT_TRUE(torch::allclose(a.at(name), avg.at(name), 1e-6, 1e-7)) << name;
  }
  EXPECT_GT(shared, 10);  // embeddings, norms and the attention of 2 layers
  // The experts' FFNs are the experts' either way.
  const auto code = load_safetensors(expert_dir(run, "code") / "model.safetensors").tensors;
  EXPECT_TRUE(torch::equal(s.at("model.layers.1.block_sparse_moe.experts.0.w1.weight"),
                           code.at("model.layers.1.mlp.gate_proj.weight")));
}

TEST_F(MoeMergeTest, CentroidRouterPointsEachDomainAtItsExpert) {
  RunDir run = fresh_run("centroid");
  auto r = run_btx("merge --run " + run.root.string() +
                   " --method btx --router-init centroid --seed-expert yes");
  ASSERT_EQ(r.code, 0) << r.output;
  const RunConfig c = load_run(run);
  auto model = load_model(run.root / "merged/btx");
  model->eval();
  ASSERT_EQ(model->config().num_local_experts, 4);  // 3 experts + the seed's FFN
  torch::NoGradGuard ng;
  const std::vector<std::string> names = {"code", "prose", "verse"};  // experts sorted by name
  for (size_t j = 0; j < names.size(); ++j) {
    auto data = domain_heldout_windows(btx::Run(run, c), names[j], 8, 32);
    ASSERT_GE(data.size(0), 1);
    for (auto* l : routed_layers(model)) {
      l->force_experts(torch::tensor({static_cast<int64_t>(j)}));
      l->record_inputs = true;
      l->input_sum = torch::Tensor();
      l->input_count = 0;
    }
    model->forward(data.narrow(1, 0, 32));
    for (auto* l : routed_layers(model)) {
      auto mean = (l->input_sum / static_cast<double>(l->input_count)).to(torch::kFloat32);
      EXPECT_EQ(l->gate(mean.unsqueeze(0)).argmax(-1).item<int64_t>(), static_cast<int64_t>(j))
          << names[j];
    }
  }
}

TEST_F(MoeMergeTest, RidgeRouterIsTheLeastSquaresFitOfEachDomainsHiddenStates) {
  RunDir run = fresh_run("ridge");
  auto r = run_btx("merge --run " + run.root.string() + " --method btx --router-init ridge");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(read_json_file(run.root / "merged/btx/merge.json").at("result").at("router_init"),
            "ridge");
  const RunConfig c = load_run(run);
  auto model = load_model(run.root / "merged/btx");
  model->eval();
  torch::NoGradGuard ng;
  const std::vector<std::string> names = {"code", "prose", "verse"};  // experts sorted by name
  const auto layers = routed_layers(model);
  std::vector<std::vector<torch::Tensor>> grams(layers.size()), sums(layers.size());
  std::vector<torch::Tensor> means;
  const int64_t T = c.experts.train.seq_len;
  for (size_t j = 0; j < names.size(); ++j) {
    // The statistics the merge took: 16 held-out windows of the expert's domain, every token
    // sent to its expert.
    auto data = domain_heldout_windows(btx::Run(run, c), names[j], 16, T);
    for (auto* l : layers) {
      l->force_experts(torch::tensor({static_cast<int64_t>(j)}));
      l->record_inputs = l->record_gram = true;
      l->input_sum = l->input_gram = torch::Tensor();
      l->input_count = 0;
    }
    model->forward(data.narrow(1, 0, T));
    for (size_t i = 0; i < layers.size(); ++i) {
      grams[i].push_back(layers[i]->input_gram);
      sums[i].push_back(layers[i]->input_sum);
    }
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto w = ridge_router_weights(grams[i], sums[i], 0.01);
    EXPECT_TRUE(torch::allclose(layers[i]->gate->weight, w, 1e-3, 1e-5)) << "layer " << i;
    // Each domain's mean hidden state (a positive multiple of the sum) scores its own expert
    // highest.
    for (size_t j = 0; j < names.size(); ++j) {
      auto sum = sums[i][j].to(torch::kFloat32);
      EXPECT_EQ(layers[i]->gate(sum.unsqueeze(0)).argmax(-1).item<int64_t>(),
                static_cast<int64_t>(j))
          << names[j] << " layer " << i;
    }
  }
  r = run_btx("merge --run " + run.root.string() +
              " --method btx --name bad --router-init ridge --ridge-lambda -1");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--ridge-lambda '-1': expected a number >= 0"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/bad"));
}

TEST_F(MoeMergeTest, FinetuneAllOrRouterOnlyAndResumeExactly) {
  // Two copies of the run: one finetunes straight through, the other is stopped and resumed.
  RunDir run = fresh_run("finetune"), ref = fresh_run("finetune-ref");
  const std::string r_ = " --run " + run.root.string();
  for (const std::string& args :
       {std::string("--method btx"), std::string("--method btx --name router"),
        std::string("--method btx --name shared")}) {
    ASSERT_EQ(run_btx("merge" + r_ + " " + args).code, 0) << args;
  }
  ASSERT_EQ(run_btx("merge --run " + ref.root.string() + " --method btx").code, 0);
  const auto merged = load_safetensors(run.root / "merged/router/model.safetensors").tensors;
  auto r = run_btx("finetune" + r_ + " --model merged/btx --stop-after 4");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune" + r_ + " --model merged/btx");
  EXPECT_NE(r.code, 0);  // an unfinished checkpoint needs --resume
  r = run_btx("finetune" + r_ + " --model merged/btx --resume");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("finetune --run " + ref.root.string() + " --model merged/btx");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(sha256_file(run.root / "merged/btx/model.safetensors") ==
              sha256_file(ref.root / "merged/btx/model.safetensors"));
  EXPECT_EQ(load_train_state(run.root / "merged/btx")->step, 8);
  EXPECT_TRUE(fs::exists(run.root / "merged/btx/merge.json"));
  auto metrics = testing::read_metrics(ref.root / "merged/btx/metrics.jsonl");
  bool saw_aux = false;
  for (const auto& m : metrics) {
    if (!m.contains("aux_loss")) continue;
    saw_aux = true;
    EXPECT_GT(m["aux_loss"].get<double>(), 0);
    ASSERT_EQ(m["expert_usage"].size(), 2u);  // two layers
    double sum = 0;
    for (double u : m["expert_usage"][0].get<std::vector<double>>()) sum += u;
    EXPECT_NEAR(sum, 2.0, 1e-9);  // top-2: every token counted twice
  }
  EXPECT_TRUE(saw_aux);

  // Router only: every other tensor is exactly the merge's.
  r = run_btx("finetune" + r_ + " --model merged/router --train router");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tuned = load_safetensors(run.root / "merged/router/model.safetensors").tensors;
  int routers = 0;
  for (const auto& [name, t] : merged) {
    const bool router = name.find("block_sparse_moe.gate.") != std::string::npos;
    routers += router;
    EXPECT_EQ(torch::equal(tuned.at(name), t), !router) << name;
  }
  EXPECT_EQ(routers, 2);

  // Routers and shared layers: the expert FFNs are exactly the merge's, everything else moved.
  const auto merged_shared = load_safetensors(run.root / "merged/shared/model.safetensors").tensors;
  r = run_btx("finetune" + r_ + " --model merged/shared --train router+shared");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tuned_shared = load_safetensors(run.root / "merged/shared/model.safetensors").tensors;
  int frozen = 0;
  for (const auto& [name, t] : merged_shared) {
    const bool ffn = param_role(name) == ParamRole::kFfn;
    frozen += ffn;
    EXPECT_EQ(torch::equal(tuned_shared.at(name), t), ffn) << name;
  }
  EXPECT_EQ(frozen, 2 * 3 * 3);  // 2 layers x 3 experts x {w1, w2, w3}
  r = run_btx("finetune" + r_ + " --model merged/shared --train experts");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("router+shared"), std::string::npos) << r.output;

  // The finetuned MoE evaluates like any model, with fewer active than total parameters.
  r = run_btx("eval" + r_ + " --model merged/btx");
  ASSERT_EQ(r.code, 0) << r.output;
  auto e = read_json_file(run.eval("btx"));
  EXPECT_LT(e["params_active"].get<int64_t>(), e["params_total"].get<int64_t>());

  // Routing analysis: every domain's tokens spread over the experts, per layer.
  testing::write_text(run.root / "sample.txt", "def f_3(x):\n    return x + 3\n");
  r = run_btx("routing" + r_ + " --model merged/btx --json --out " +
              (run.root / "routing.json").string() + " --text " +
              (run.root / "sample.txt").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto a = read_json_file(run.root / "routing.json");
  EXPECT_EQ(a["experts"], nlohmann::json::array({"code", "prose", "verse"}));
  ASSERT_EQ(a["layers"].size(), 2u);
  for (const auto& layer : a["layers"]) {
    for (const auto& d : {"code", "prose", "verse"}) {
      double s1 = 0, sk = 0;
      for (double f : layer["top1"][d].get<std::vector<double>>()) s1 += f;
      for (double f : layer["topk"][d].get<std::vector<double>>()) sk += f;
      EXPECT_NEAR(s1, 1.0, 1e-9) << d;
      EXPECT_NEAR(sk, 2.0, 1e-9) << d;  // top-2
      const double h = layer["entropy"][d].get<double>();
      EXPECT_GE(h, 0);
      EXPECT_LE(h, std::log(3.0) + 1e-6);
      const double own = layer["own_expert_top1"][d].get<double>();
      const auto i = std::string(d) == "code" ? 0 : std::string(d) == "prose" ? 1 : 2;
      EXPECT_DOUBLE_EQ(own, layer["top1"][d][i].get<double>());
    }
  }
  ASSERT_GE(a["tokens"].size(), 5u);
  std::string text;
  for (const auto& t : a["tokens"]) {
    text += t["piece"].get<std::string>();
    ASSERT_EQ(t["layers"].size(), 2u);
    EXPECT_EQ(t["layers"][0]["experts"].size(), 2u);
  }
  EXPECT_EQ(text, "def f_3(x):\n    return x + 3\n");
  r = run_btx("routing" + r_ + " --model merged/btx");  // the table of the middle layer
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("layer 1"), std::string::npos) << r.output;

  // Bad input.
  r = run_btx("routing" + r_ + " --model seed");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("is not an MoE or SMEAR model"), std::string::npos) << r.output;
  r = run_btx("finetune" + r_ + " --model seed");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("is not an MoE or SMEAR model"), std::string::npos) << r.output;
  r = run_btx("merge" + r_ + " --method btx --top-k 4 --name bad");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("--top-k 4 must be between 1 and the number of experts (3)"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/bad"));
}

TEST_F(MoeMergeTest, TagAndHashBaselines) {
  RunDir run = fresh_run("baselines");
  const std::string r_ = " --run " + run.root.string();
  testing::write_text(run.root / "other" / "glossary.txt",
                      testing::tagged_lines('g', testing::kDictWords, 30'000, 5));
  for (const char* m : {"tag", "hash"}) {
    auto r = run_btx("merge" + r_ + " --method " + std::string(m));
    ASSERT_EQ(r.code, 0) << m << "\n" << r.output;
    EXPECT_EQ(load_model_config(run.root / "merged" / m).router_mode, m);
  }
  auto r = run_btx("finetune" + r_ + " --model merged/tag");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_btx("eval" + r_ + " --model merged/tag,merged/hash --novel " +
              (run.root / "other").string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tag = read_json_file(run.eval("tag"));
  for (const char* d : {"code", "prose", "verse"}) {
    EXPECT_EQ(tag["domains"][d]["model"]["expert"], d);
    EXPECT_EQ(tag["domains"][d]["model"]["chosen_by"], "label");
  }
  EXPECT_EQ(tag["domains"]["glossary"]["model"]["chosen_by"], "held-out loss");
  // One expert per token: active = total minus two of three experts per layer.
  const auto hash = read_json_file(run.eval("hash"));
  EXPECT_EQ(hash["params_active"], tag["params_active"]);
  EXPECT_LT(hash["params_active"].get<int64_t>(), hash["params_total"].get<int64_t>());
  // Tag routing on its own domain beats routing by token hash.
  EXPECT_LT(tag["summary"]["train_mean_loss"].get<double>(),
            hash["summary"]["train_mean_loss"].get<double>());
}

// BAM keeps every expert's attention: attention expert j of each layer is expert j's attention
// bit for bit, the FFN experts are btx's, and only norms and embeddings are averaged. A merge of
// one expert is that expert; the result finetunes (both routers learn), generates with its KV
// cache, and export refuses it with the reason.
TEST_F(MoeMergeTest, BamKeepsEachExpertsAttentionAndOneExpertIsTheDenseModel) {
  RunDir run = fresh_run("bam");
  const std::string r_ = " --run " + run.root.string();
  auto r = run_btx("merge" + r_ + " --method bam");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto bam = load_safetensors(run.root / "merged/bam/model.safetensors").tensors;
  const ModelConfig c = load_model_config(run.root / "merged/bam");
  EXPECT_TRUE(c.is_moe());
  EXPECT_EQ(c.num_attention_experts, 3);
  std::vector<std::map<std::string, torch::Tensor>> experts;
  for (const char* e : {"code", "prose", "verse"}) {
    experts.push_back(load_safetensors(expert_dir(run, e) / "model.safetensors").tensors);
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int64_t j = 0; j < 3; ++j) {
      for (const char* p : {"q", "k", "v", "o"}) {
        EXPECT_TRUE(torch::equal(bam.at(attention_expert_name(l, j, p)),
                                 experts[j].at(attention_name(l, p))))
            << l << " " << j << " " << p;
      }
      EXPECT_TRUE(
          torch::equal(bam.at(moe_ffn_name(l, j, "w1")), experts[j].at(dense_ffn_name(l, "w1"))));
    }
    EXPECT_EQ(bam.count(attention_name(l, "q")), 0u);
    EXPECT_EQ(bam.at(attention_router_name(l)).sizes(), (std::vector<int64_t>{3, c.hidden_size}));
  }
  const auto mean = (experts[0].at("model.norm.weight") + experts[1].at("model.norm.weight") +
                     experts[2].at("model.norm.weight")) /
                    3;
  EXPECT_TRUE(torch::allclose(bam.at("model.norm.weight"), mean, 1e-6, 1e-7));

  // Finetuning trains both routers; the attention experts are generated from with a cache.
  r = run_btx("finetune" + r_ + " --model merged/bam --steps 4");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tuned = load_safetensors(run.root / "merged/bam/model.safetensors").tensors;
  EXPECT_FALSE(torch::equal(tuned.at(attention_router_name(0)), bam.at(attention_router_name(0))));
  EXPECT_FALSE(torch::equal(tuned.at(moe_router_name(0)), bam.at(moe_router_name(0))));
  r = run_btx("generate" + r_ + " --model merged/bam --prompt 'def f' --max-tokens 8");
  ASSERT_EQ(r.code, 0) << r.output;
  // The routing analysis shows the attention router's weights too: a distribution per domain.
  const fs::path routing = run.root / "bam-routing.json";
  r = run_btx("routing" + r_ + " --model merged/bam --layer 0 --out " + routing.string());
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("mean weight of each attention expert per domain"), std::string::npos)
      << r.output;
  const auto analysis = read_json_file(routing);
  for (const auto& layer : analysis["layers"]) {
    for (const char* d : {"code", "prose", "verse"}) {
      const auto w = layer["attention_mean_weight"][d].get<std::vector<double>>();
      ASSERT_EQ(w.size(), 3u);
      EXPECT_NEAR(w[0] + w[1] + w[2], 1.0, 1e-6) << d;
    }
  }
  r = run_btx("export" + r_ + " --model merged/bam --out " + (run.root / "hf-bam").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("is a BAM model"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "hf-bam"));

  // One expert: the dense expert itself.
  RunDir one = fresh_run("bam-one");
  for (const char* gone : {"prose", "verse"}) fs::remove_all(expert_dir(one, gone));
  r = run_btx("merge --run " + one.root.string() + " --method bam --top-k 1");
  ASSERT_EQ(r.code, 0) << r.output;
  torch::NoGradGuard ng;
  auto single = load_model(one.root / "merged/bam");
  auto code = load_model(expert_dir(one, "code"));
  single->eval();
  code->eval();
  torch::manual_seed(0);
  const auto x = torch::randint(0, 320, {2, 20});
  EXPECT_TRUE(torch::allclose(single->forward(x), code->forward(x), 1e-5, 1e-6));
}

// Null experts (--data-sparsity): ρ = 0.5 over three experts adds three null slots; their router
// row starts at zero and trains; evaluation reports the measured experts per token in its
// active parameters and FLOPs (fewer than btx's two); generate decodes with the KV cache;
// routing analysis shows the null column; export refuses with the reason.
TEST_F(MoeMergeTest, NullExpertsRunFewerExpertsPerTokenAndExportRefusesThem) {
  RunDir run = fresh_run("null");
  const std::string r_ = " --run " + run.root.string();
  auto r = run_btx("merge" + r_ + " --method btx --data-sparsity 0.5 --name null");
  ASSERT_EQ(r.code, 0) << r.output;
  ASSERT_EQ(run_btx("merge" + r_ + " --method btx").code, 0);
  const ModelConfig c = load_model_config(run.root / "merged/null");
  EXPECT_EQ(c.num_null_experts, 3);
  const auto record = read_json_file(run.root / "merged/null/merge.json")["result"];
  EXPECT_EQ(record["data_sparsity"]["null_experts"], 3);
  EXPECT_DOUBLE_EQ(record["data_sparsity"]["effective"].get<double>(), 0.5);
  const auto weights = load_safetensors(run.root / "merged/null/model.safetensors").tensors;
  EXPECT_EQ(
      weights.at("model.layers.0.block_sparse_moe.null_gate.weight").abs().sum().item<float>(),
      0.f);
  r = run_btx("finetune" + r_ + " --model merged/null --steps 4");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tuned = load_safetensors(run.root / "merged/null/model.safetensors").tensors;
  EXPECT_GT(tuned.at("model.layers.0.block_sparse_moe.null_gate.weight").abs().sum().item<float>(),
            0.f);
  r = run_btx("eval" + r_ + " --model merged/null,merged/btx");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto null_eval = read_json_file(run.eval("null"));
  const auto btx_eval = read_json_file(run.eval("btx"));
  // Measured: between none and two experts per token, so fewer active weights than btx's.
  EXPECT_LT(null_eval["params_active"].get<int64_t>(), btx_eval["params_active"].get<int64_t>());
  EXPECT_LT(null_eval["flops_per_token"].get<int64_t>(),
            btx_eval["flops_per_token"].get<int64_t>());
  EXPECT_EQ(null_eval["params_total"].get<int64_t>(),
            btx_eval["params_total"].get<int64_t>() + c.num_hidden_layers * c.hidden_size);
  r = run_btx("generate" + r_ + " --model merged/null --prompt 'def f' --max-tokens 8");
  EXPECT_EQ(r.code, 0) << r.output;
  const fs::path routing = run.root / "null-routing.json";
  r = run_btx("routing" + r_ + " --model merged/null --layer 0 --out " + routing.string());
  ASSERT_EQ(r.code, 0) << r.output;
  const auto analysis = read_json_file(routing);
  EXPECT_EQ(analysis["experts"].back(), "null");
  EXPECT_EQ(analysis["experts"].size(), 4u);
  r = run_btx("export" + r_ + " --model merged/null --out " + (run.root / "hf-null").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("null experts per layer"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "hf-null"));
  r = run_btx("export" + r_ + " --model merged/null --format gguf --out " +
              (run.root / "null.gguf").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("null experts per layer"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "null.gguf"));
  // Null slots are chosen by top-k: another router is refused before anything is built.
  r = run_btx("merge" + r_ + " --method btx --data-sparsity 0.5 --router soft --name bad");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("null experts need --router top-k"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "merged/bad"));
}

// MetaMoE's context-aware router input (--router-context yes): its λ starts at sigmoid(-2) and
// learns in finetuning; generate decodes with the prefix sum in the cache; export refuses it.
TEST_F(MoeMergeTest, ContextAwareRouterLearnsItsMixAndExportRefusesIt) {
  RunDir run = fresh_run("context");
  const std::string r_ = " --run " + run.root.string();
  auto r = run_btx("merge" + r_ + " --method btx --router-context yes --name ctx");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_TRUE(load_model_config(run.root / "merged/ctx").router_context);
  const std::string mix = "model.layers.0.block_sparse_moe.context_mix";
  const auto merged = load_safetensors(run.root / "merged/ctx/model.safetensors").tensors;
  EXPECT_FLOAT_EQ(merged.at(mix).item<float>(), -2.f);
  r = run_btx("finetune" + r_ + " --model merged/ctx --train router --steps 4");
  ASSERT_EQ(r.code, 0) << r.output;
  const auto tuned = load_safetensors(run.root / "merged/ctx/model.safetensors").tensors;
  EXPECT_NE(tuned.at(mix).item<float>(), -2.f);
  r = run_btx("generate" + r_ + " --model merged/ctx --prompt 'def f' --max-tokens 8");
  EXPECT_EQ(r.code, 0) << r.output;
  r = run_btx("export" + r_ + " --model merged/ctx --out " + (run.root / "hf-ctx").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.output.find("router_context"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(run.root / "hf-ctx"));
}

}  // namespace
}  // namespace btx
