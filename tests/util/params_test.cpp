// ParamValues (util/params.h): declared parameters resolved once into typed values, the given
// strings kept as given, defaults filled in, undeclared names and values of the wrong type
// refused, and typed access that does not re-parse.
#include "btx/util/params.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

std::vector<Param> declared() {
  return {integer_param("top-k", "2", "experts per token", 1),
          real_param("alpha", "0.3", "rate", 0, 1, /*min_open=*/true),
          choice_param("seed-expert", "no", {"no", "yes"}, "add the seed"),
          choice_param("prior", "cached", {"uniform", "cached"}, "prior"),
          text_param("weights", "EXPERT=W,...")};
}

TEST(ParamValues, GivenValuesAreParsedOnceAndKeptAsGiven) {
  const auto p = ParamValues::resolve(
      declared(), {{"top-k", "3"}, {"alpha", "0.50"}, {"seed-expert", "yes"}, {"weights", "a=1"}});
  EXPECT_EQ(p.integer("top-k"), 3);
  EXPECT_DOUBLE_EQ(p.real("alpha"), 0.5);
  EXPECT_EQ(p.given("alpha"), "0.50");  // recorded as written, not as reformatted
  EXPECT_TRUE(p.flag("seed-expert"));
  EXPECT_EQ(p.text("prior"), "cached");  // the default
  EXPECT_EQ(p.text("weights"), "a=1");
  EXPECT_TRUE(p.has("weights"));
  const std::map<std::string, std::string> strings = {{"alpha", "0.50"},
                                                      {"prior", "cached"},
                                                      {"seed-expert", "yes"},
                                                      {"top-k", "3"},
                                                      {"weights", "a=1"}};
  EXPECT_EQ(p.strings(), strings);
}

TEST(ParamValues, DefaultsFillInAndAnOptionalTextWithoutDefaultIsAbsent) {
  const auto p = ParamValues::resolve(declared(), {});
  EXPECT_EQ(p.integer("top-k"), 2);
  EXPECT_DOUBLE_EQ(p.real("alpha"), 0.3);
  EXPECT_FALSE(p.flag("seed-expert"));
  EXPECT_FALSE(p.has("weights"));
  EXPECT_EQ(p.text("weights"), "");
  EXPECT_EQ(p.given("weights"), "");
}

TEST(ParamValues, BadValuesUndeclaredNamesAndWrongTypesAreErrors) {
  EXPECT_EQ(error_of([] {
              ParamValues::resolve(declared(), {{"top-k", "0"}});
            }),
            "--top-k '0': expected an integer >= 1");
  EXPECT_EQ(error_of([] {
              ParamValues::resolve(declared(), {{"alpha", "0"}});
            }),
            "--alpha '0': expected a number in (0, 1]");
  EXPECT_EQ(error_of([] {
              ParamValues::resolve(declared(), {{"prior", "often"}});
            }),
            "--prior 'often' is not one of: uniform, cached");
  EXPECT_EQ(error_of([] {
              ParamValues::resolve(declared(), {{"topk", "2"}});
            }),
            "--topk is not a declared parameter");
  const auto p = ParamValues::resolve(declared(), {});
  EXPECT_EQ(error_of([&] { p.integer("alpha"); }),
            "--alpha is not read as the type it was declared with");
  EXPECT_EQ(error_of([&] { p.real("top-k"); }),
            "--top-k is not read as the type it was declared with");
  EXPECT_EQ(error_of([&] { p.flag("prior"); }), "--prior 'cached' is not yes or no");
  EXPECT_EQ(error_of([&] { p.integer("k"); }), "no parameter --k is declared");
  EXPECT_FALSE(p.has("k"));
}

TEST(ParamValues, AnOptionalNumberWithoutDefaultHasNoValue) {
  const auto p = ParamValues::resolve({integer_param("steps", "", "optional", 1)}, {});
  EXPECT_FALSE(p.has("steps"));
  EXPECT_EQ(error_of([&] { p.integer("steps"); }), "--steps has no value");
  EXPECT_EQ(ParamValues::resolve({integer_param("steps", "", "optional", 1)}, {{"steps", "7"}})
                .integer("steps"),
            7);
}

}  // namespace
}  // namespace btx
