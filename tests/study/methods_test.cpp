// [study] methods parsed and checked against the merge registry (study/methods.cpp): entries
// into merge requests, the finetuning and analysis each gets, and the errors that name the entry.
#include <gtest/gtest.h>

#include "btx/study/study.h"
#include "btx/util/error.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

RunConfig default_config() {
  return parse_run_config(default_study_config(), "default");
}

TEST(StudyMethods, ParsesEntriesIntoMergeRequests) {
  RunConfig c = default_config();
  c.study.methods = {"average", "ensemble --top-k 2 --name ensemble-top2", "btx --top-k 1"};
  const auto m = study_methods(c);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].name, "average");
  EXPECT_EQ(m[0].finetune, "");  // not routed: nothing to finetune
  EXPECT_EQ(m[1].method, "ensemble");
  EXPECT_EQ(m[1].name, "ensemble-top2");
  EXPECT_EQ(m[1].params.at("top-k"), "2");
  EXPECT_EQ(m[2].name, "btx");
  EXPECT_EQ(m[2].finetune, "all");  // a routed result: finetuned whole by default
}

TEST(StudyMethods, FinetuneFollowsTheMethodOrTheEntry) {
  RunConfig c = default_config();
  c.study.methods = {"btx --finetune router+shared --name btx-rs", "btx --finetune none"};
  auto m = study_methods(c);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].finetune, "router+shared");
  EXPECT_EQ(m[0].params.count("finetune"), 0u);  // the planner's, not a merge parameter
  EXPECT_EQ(m[1].finetune, "");
  c.experts.mode = ExpertMode::kFlexolmo;
  c.study.methods = {"flexolmo", "flexolmo --finetune router --name flexolmo-ft", "average"};
  m = study_methods(c);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].finetune, "");  // flexolmo's routers were trained with its experts
  EXPECT_EQ(m[1].finetune, "router");
  // The MoE builders take dense experts: refused before anything trains.
  c.study.methods = {"btx"};
  EXPECT_EQ(error_of([&] { study_methods(c); }),
            "study.methods[0] \"btx\": btx merges experts trained in mode all or ffn, not "
            "'flexolmo' ([experts] mode)");
  c.experts.mode = ExpertMode::kAll;
  c.study.methods = {"flexolmo"};
  EXPECT_EQ(error_of([&] { study_methods(c); }),
            "study.methods[0] \"flexolmo\": flexolmo merges experts trained in mode flexolmo, "
            "not 'all' ([experts] mode)");
  c.study.methods = {"average --finetune all"};
  EXPECT_EQ(error_of([&] { study_methods(c); }),
            "study.methods[0] \"average --finetune all\": --finetune: the average method makes "
            "no routed model to finetune");
  c.study.methods = {"btx --finetune experts"};
  EXPECT_EQ(error_of([&] { study_methods(c); }),
            "study.methods[0] \"btx --finetune experts\": --finetune: 'experts' is not one of "
            "all, router, router+shared");
  // A budget of its own: --finetune-steps (not a merge parameter either).
  c.study.methods = {"btx --finetune-steps 400 --name btx-400", "tag"};
  m = study_methods(c);
  EXPECT_EQ(m[0].finetune_steps, 400);
  EXPECT_EQ(m[0].params.count("finetune-steps"), 0u);
  EXPECT_EQ(m[1].finetune_steps, 0);  // [finetune] steps
  for (const auto& [entry, says] : std::vector<std::pair<std::string, std::string>>{
           {"btx --finetune-steps 0", "--finetune-steps '0': expected an integer >= 1"},
           {"btx --finetune-steps 4x", "--finetune-steps '4x': expected an integer >= 1"},
           {"btx --finetune none --finetune-steps 40",
            "--finetune-steps: the btx model of this entry is not finetuned"},
           {"average --finetune-steps 40",
            "--finetune-steps: the average model of this entry is not finetuned"}}) {
    c.study.methods = {entry};
    EXPECT_EQ(error_of([&] { study_methods(c); }), "study.methods[0] \"" + entry + "\": " + says);
  }
}

// MetaMoE's rows: --proxies names the pool domains a routed entry is finetuned on instead of
// the domains' own text; neither a training nor a novel domain, and only for a finetuned entry.
TEST(StudyMethods, ProxiesNamePoolDomainsForAFinetunedEntry) {
  RunConfig c = default_config();
  ASSERT_TRUE(c.study.build_corpus);
  c.study.methods = {"btx --finetune router --proxies glossary,aphorisms --name p", "btx"};
  const auto m = study_methods(c);
  EXPECT_EQ(m[0].proxies, (std::vector<std::string>{"glossary", "aphorisms"}));
  EXPECT_EQ(m[0].finetune, "router");
  EXPECT_TRUE(m[1].proxies.empty());
  EXPECT_EQ(proxy_pool_dir(c), fs::path(c.corpus.dir + "-pool"));
  for (const auto& [entry, says] : std::vector<std::pair<std::string, std::string>>{
           {"btx --finetune none --proxies glossary",
            "--proxies: the btx model of this entry is not finetuned"},
           {"average --proxies glossary",
            "--proxies: the average model of this entry is not finetuned"},
           {"btx --proxies " + c.corpus.domains[0],
            "--proxies: '" + c.corpus.domains[0] +
                "' is a training domain; proxies stand in for the domains' own text, so they "
                "come from other text"},
           {"btx --proxies " + c.corpus.novel[0],
            "--proxies: '" + c.corpus.novel[0] +
                "' is a novel domain, kept for evaluation only"}}) {
    c.study.methods = {entry};
    EXPECT_EQ(error_of([&] { study_methods(c); }), "study.methods[0] \"" + entry + "\": " + says);
  }
  c.study.methods = {"btx --proxies klingon"};
  const std::string e = error_of([&] { study_methods(c); });
  EXPECT_NE(e.find("--proxies: unknown domain 'klingon'"), std::string::npos) << e;
  EXPECT_NE(e.find("glossary"), std::string::npos) << e;  // lists the known ones
}

// The planner decides which combinations get an analysis stage with the rule the report applies
// to the model folders (analysis_kind): routing for learned and hashed routers, the posterior
// for ensembles, nothing for tag routing (the label) and unrouted models.
TEST(StudyMethods, AnalysisFollowsTheResultsRouter) {
  RunConfig c = default_config();
  c.study.methods = {"average",
                     "ensemble",
                     "btx --router sample --name s",
                     "tag",
                     "hash",
                     "smear --router sequence",
                     "upcycle --top-k 1",
                     "dense"};
  const auto m = study_methods(c);
  ASSERT_EQ(m.size(), 8u);
  const std::vector<AnalysisKind> want = {AnalysisKind::kNone,    AnalysisKind::kPosterior,
                                          AnalysisKind::kRouting, AnalysisKind::kNone,
                                          AnalysisKind::kRouting, AnalysisKind::kRouting,
                                          AnalysisKind::kRouting, AnalysisKind::kNone};
  for (size_t i = 0; i < m.size(); ++i) EXPECT_EQ(m[i].analysis, want[i]) << m[i].name;
  EXPECT_EQ(analysis_kind(false, &router_traits(RouterKind::kTag)), AnalysisKind::kNone);
  EXPECT_EQ(analysis_kind(false, nullptr), AnalysisKind::kNone);
  EXPECT_EQ(analysis_kind(true, nullptr), AnalysisKind::kPosterior);
}

TEST(StudyMethods, BadEntriesAreErrorsNamingTheEntry) {
  RunConfig c = default_config();
  auto err = [&](std::vector<std::string> methods) {
    c.study.methods = std::move(methods);
    return error_of([&] { study_methods(c); });
  };
  std::string e = err({"average", "averag"});
  EXPECT_NE(e.find("study.methods[1] \"averag\""), std::string::npos) << e;
  EXPECT_NE(e.find("weighted-average"), std::string::npos) << e;  // lists the known ones
  e = err({"ensemble --top-q 2"});
  EXPECT_NE(e.find("--top-q does not apply to method 'ensemble'"), std::string::npos) << e;
  e = err({"btx --router nonsense"});
  EXPECT_NE(e.find("is not one of"), std::string::npos) << e;
  e = err({"average", "average"});
  EXPECT_NE(e.find("the name 'average' is used twice"), std::string::npos) << e;
  e = err({"ensemble --top-k"});
  EXPECT_NE(e.find("--top-k has no value"), std::string::npos) << e;
  e = err({"average --name random-split"});
  EXPECT_NE(e.find("used twice"), std::string::npos) << e;  // reserved for the baseline
}

// Parameter values are checked against their declared types and ranges when the study is
// planned, before anything trains; the error names the entry, the parameter, the value and what
// was expected.
TEST(StudyMethods, ParameterValuesAreCheckedWhenTheStudyIsPlanned) {
  RunConfig c = default_config();
  auto err = [&](std::vector<std::string> methods) {
    c.study.methods = std::move(methods);
    return error_of([&] { study_methods(c); });
  };
  EXPECT_EQ(err({"average", "btx --top-k two"}),
            "study.methods[1] \"btx --top-k two\": --top-k 'two': expected an integer >= 1");
  EXPECT_EQ(err({"btx --top-k 0"}),
            "study.methods[0] \"btx --top-k 0\": --top-k '0': expected an integer >= 1");
  EXPECT_EQ(err({"smear --expert-dropout 1"}),
            "study.methods[0] \"smear --expert-dropout 1\": --expert-dropout '1': expected a "
            "number in [0, 1)");
  EXPECT_EQ(err({"ensemble --alpha 0"}),
            "study.methods[0] \"ensemble --alpha 0\": --alpha '0': expected a number in (0, 1]");
  EXPECT_EQ(err({"btx --aux-loss -0.5"}),
            "study.methods[0] \"btx --aux-loss -0.5\": --aux-loss '-0.5': expected a number >= 0");
  EXPECT_EQ(err({"dense --extra-tokens 1.5"}),
            "study.methods[0] \"dense --extra-tokens 1.5\": --extra-tokens '1.5': expected an "
            "integer >= 0");
  // Across parameters: weighted-average needs exactly one of --weights and --target.
  std::string e = err({"weighted-average"});
  EXPECT_NE(e.find("study.methods[0] \"weighted-average\": weighted-average needs exactly one of"),
            std::string::npos)
      << e;
  EXPECT_EQ(err({"weighted-average --target each", "btx --top-k 1 --aux-loss 0 --name b1"}), "");
}

}  // namespace
}  // namespace btx
