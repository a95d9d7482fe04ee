// Typed merge parameters (util/params.h): each type's check by hand (integers, open and closed
// ranges of numbers, choices, free text), the "expected" texts, and over the whole registry:
// every method's defaults pass its own declarations, and resolve_merge_params refuses values
// of the wrong type or range, unknown parameters and a method's cross-parameter rule.
#include <gtest/gtest.h>

#include "btx/merge/method.h"
#include "btx/util/error.h"
#include "btx/util/params.h"
#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

TEST(MergeParams, IntegersAreWholeAndWithinTheirRange) {
  const Param k = integer_param("top-k", "2", "experts per token", 1);
  EXPECT_EQ(k.expected(), "an integer >= 1");
  EXPECT_EQ(error_of([&] { k.check("2"); }), "");
  EXPECT_EQ(error_of([&] { k.check(""); }), "");  // not given, no default
  EXPECT_EQ(error_of([&] { k.check("two"); }), "--top-k 'two': expected an integer >= 1");
  EXPECT_EQ(error_of([&] { k.check("0"); }), "--top-k '0': expected an integer >= 1");
  EXPECT_EQ(error_of([&] { k.check("2.5"); }), "--top-k '2.5': expected an integer >= 1");
  EXPECT_EQ(error_of([&] { k.check("2x"); }), "--top-k '2x': expected an integer >= 1");
  EXPECT_EQ(integer_param("n", "0", "", 0, 8).expected(), "an integer in [0, 8]");
  EXPECT_EQ(error_of([] { integer_param("n", "0", "", 0, 8).check("9"); }),
            "--n '9': expected an integer in [0, 8]");
  EXPECT_EQ(integer_param("n", "0", "").expected(), "an integer");
}

TEST(MergeParams, NumbersAreFiniteAndRespectOpenAndClosedBounds) {
  const Param dropout = real_param("p", "0.1", "", 0, 1, false, /*max_open=*/true);
  EXPECT_EQ(dropout.expected(), "a number in [0, 1)");
  EXPECT_EQ(error_of([&] { dropout.check("0"); }), "");
  EXPECT_EQ(error_of([&] { dropout.check("0.99"); }), "");
  EXPECT_EQ(error_of([&] { dropout.check("1"); }), "--p '1': expected a number in [0, 1)");
  const Param alpha = real_param("alpha", "0.3", "", 0, 1, /*min_open=*/true);
  EXPECT_EQ(alpha.expected(), "a number in (0, 1]");
  EXPECT_EQ(error_of([&] { alpha.check("1"); }), "");
  EXPECT_EQ(error_of([&] { alpha.check("0"); }), "--alpha '0': expected a number in (0, 1]");
  const Param w = real_param("w", "0", "", 0);
  EXPECT_EQ(w.expected(), "a number >= 0");
  for (const char* bad : {"nan", "inf", "-1e-9", "0.5.1", "x"}) {
    EXPECT_EQ(error_of([&] { w.check(bad); }),
              std::string("--w '") + bad + "': expected a number >= 0");
  }
  EXPECT_EQ(error_of([&] { w.check("1e3"); }), "");
  EXPECT_EQ(real_param("g", "1", "", 0, 10, true, false).expected(), "a number in (0, 10]");
  EXPECT_EQ(real_param("g", "1", "", 0, std::numeric_limits<double>::infinity(), true).expected(),
            "a number > 0");
}

TEST(MergeParams, ChoicesAndText) {
  const Param c = choice_param("prior", "cached", {"uniform", "cached"}, "");
  EXPECT_EQ(c.expected(), "one of: uniform, cached");
  EXPECT_EQ(error_of([&] { c.check("cached"); }), "");
  EXPECT_EQ(error_of([&] { c.check("sometimes"); }),
            "--prior 'sometimes' is not one of: uniform, cached");
  const Param t = text_param("weights", "EXPERT=W,...");
  EXPECT_EQ(t.expected(), "text");
  EXPECT_EQ(error_of([&] { t.check("a=1,b=2"); }), "");
  EXPECT_EQ(t.default_value, "");
}

TEST(MergeParams, EveryMethodsDefaultsFitItsOwnDeclarations) {
  for (const auto& m : merge_methods()) {
    for (const auto& p : m.params) {
      EXPECT_EQ(error_of([&] { p.check(p.default_value); }), "") << m.name << " --" << p.name;
      if (p.type == ParamType::kChoice) {
        EXPECT_FALSE(p.choices.empty()) << m.name << " --" << p.name;
      }
    }
    // The methods that need a parameter: weighted-average --weights or --target, symphony
    // --from or --take.
    if (m.name == "weighted-average" || m.name == "symphony") {
      EXPECT_NE(error_of([&] { resolve_merge_params(m, {}); }), "") << m.name;
      continue;
    }
    EXPECT_EQ(error_of([&] { resolve_merge_params(m, {}); }), "") << m.name;
  }
}

TEST(MergeParams, ResolveChecksTypesRangesNamesAndCrossParameterRules) {
  const MergeMethod& btx = find_merge_method("btx");
  const auto p = resolve_merge_params(btx, {{"top-k", "1"}});
  EXPECT_EQ(p.given("top-k"), "1");
  EXPECT_EQ(p.integer("top-k"), 1);
  EXPECT_EQ(p.given("router"), "top-k");  // the default filled in, as the string it is
  EXPECT_EQ(p.text("router"), "top-k");
  EXPECT_DOUBLE_EQ(p.real("aux-loss"), 0.01);
  EXPECT_FALSE(p.flag("seed-expert"));
  EXPECT_EQ(error_of([&] {
              resolve_merge_params(btx, {{"top-k", "-1"}});
            }),
            "--top-k '-1': expected an integer >= 1");
  EXPECT_NE(error_of([&] {
              resolve_merge_params(btx, {{"prior", "cached"}});
            }).find("--prior does not apply to method 'btx'"),
            std::string::npos);
  const MergeMethod& wa = find_merge_method("weighted-average");
  const std::string both = error_of([&] {
    resolve_merge_params(wa, {{"weights", "a=1"}, {"target", "each"}});
  });
  EXPECT_NE(both.find("needs exactly one of --weights"), std::string::npos) << both;
  EXPECT_EQ(error_of([&] { resolve_merge_params(wa, {{"target", "each"}}); }), "");
  EXPECT_EQ(error_of([&] {
              resolve_merge_params(wa, {{"target", "each"}, {"alpha", "2"}});
            }),
            "--alpha '2': expected a number in (0, 1]");
}

}  // namespace
}  // namespace btx
