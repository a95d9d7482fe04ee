// tf-idf vectors for c-BTM's clustering: terms, a hand-computed 3-document example, vocabulary
// limits, thread independence, and the JSON round trip with its errors.
#include "btx/cluster/tfidf.h"

#include <gtest/gtest.h>

#include <cmath>

#include "btx/util/error.h"

namespace btx {
namespace {

std::vector<std::string> terms(std::string_view text) {
  std::vector<std::string> out;
  for_each_term(text, [&](std::string_view w) { out.emplace_back(w); });
  return out;
}

TEST(Tfidf, Terms) {
  EXPECT_EQ(terms("Hello, World_2 {x}\n\tcaf\xC3\xA9!"),
            (std::vector<std::string>{"hello", ",", "world_2", "{", "x", "}", "caf\xC3\xA9", "!"}));
  EXPECT_EQ(terms(std::string(41, 'a') + " b"), (std::vector<std::string>{"b"}));  // too long
  EXPECT_TRUE(terms(" \n\t ").empty());
}

TEST(Tfidf, HandComputedThreeDocuments) {
  const std::vector<std::string_view> docs = {"a b a", "b c", "c c c"};
  TfidfOptions o;
  o.min_df = 1;
  const TfidfVectorizer v = TfidfVectorizer::fit(docs, o);
  // df: b = 2, c = 2, a = 1; ordered by df, then by term.
  ASSERT_EQ(v.vocab(), (std::vector<std::string>{"b", "c", "a"}));
  const double idf2 = std::log(4.0 / 3.0) + 1, idf1 = std::log(4.0 / 2.0) + 1;
  EXPECT_NEAR(v.idf()[0], idf2, 1e-6);
  EXPECT_NEAR(v.idf()[2], idf1, 1e-6);
  const auto x = v.transform(docs).to_dense();  // (3, 3)
  // doc 0: b once (tf 1), a twice (tf 1 + ln 2).
  const double b0 = idf2, a0 = (1 + std::log(2.0)) * idf1, n0 = std::sqrt(b0 * b0 + a0 * a0);
  EXPECT_NEAR(x[0][0].item<double>(), b0 / n0, 1e-6);
  EXPECT_NEAR(x[0][1].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(x[0][2].item<double>(), a0 / n0, 1e-6);
  // doc 1: b and c once each, same idf: 1/sqrt(2) both.
  EXPECT_NEAR(x[1][0].item<double>(), 1 / std::sqrt(2.0), 1e-6);
  EXPECT_NEAR(x[1][1].item<double>(), 1 / std::sqrt(2.0), 1e-6);
  // doc 2: only c: a unit vector.
  EXPECT_NEAR(x[2][1].item<double>(), 1.0, 1e-6);
  // Raw counts without sublinear tf: doc 0 is (idf2, 0, 2 idf1), normalised.
  o.sublinear_tf = false;
  const auto raw = TfidfVectorizer::fit(docs, o).transform(docs).to_dense();
  const double n0raw = std::sqrt(idf2 * idf2 + 4 * idf1 * idf1);
  EXPECT_NEAR(raw[0][2].item<double>(), 2 * idf1 / n0raw, 1e-6);
}

TEST(Tfidf, VocabularyLimitsAndUnknownText) {
  const std::vector<std::string_view> docs = {"a b a", "b c", "c c c"};
  TfidfOptions o;  // min_df 2 drops "a"
  EXPECT_EQ(TfidfVectorizer::fit(docs, o).vocab(), (std::vector<std::string>{"b", "c"}));
  o.features = 1;  // ties by term: "b" before "c"
  const TfidfVectorizer v = TfidfVectorizer::fit(docs, o);
  EXPECT_EQ(v.vocab(), (std::vector<std::string>{"b"}));
  const auto x = v.transform({"zzz unknown", "b"}).to_dense();  // (2, 1)
  EXPECT_EQ(x[0][0].item<float>(), 0.0f);                       // no known term: a zero row
  EXPECT_NEAR(x[1][0].item<float>(), 1.0f, 1e-6);
  o.min_df = 5;
  EXPECT_THROW(TfidfVectorizer::fit(docs, o), Error);
}

TEST(Tfidf, SameResultOnAnyThreadCount) {
  std::vector<std::string> texts;
  for (int i = 0; i < 50; ++i)
    texts.push_back("doc " + std::to_string(i % 7) + " word" + std::to_string(i % 5) + " x y");
  const std::vector<std::string_view> docs(texts.begin(), texts.end());
  TfidfOptions o;
  const TfidfVectorizer v1 = TfidfVectorizer::fit(docs, o, 1),
                        v3 = TfidfVectorizer::fit(docs, o, 3);
  EXPECT_EQ(v1.vocab(), v3.vocab());
  EXPECT_TRUE(torch::equal(v1.transform(docs, 1).to_dense(), v3.transform(docs, 3).to_dense()));
}

TEST(Tfidf, JsonRoundTripAndErrors) {
  const std::vector<std::string_view> docs = {"a b a", "b c", "c c c"};
  TfidfOptions o;
  o.min_df = 1;
  const TfidfVectorizer v = TfidfVectorizer::fit(docs, o);
  const auto idf = torch::tensor(v.idf());
  const TfidfVectorizer back = TfidfVectorizer::from_json(v.to_json(), idf, "m.json");
  EXPECT_TRUE(torch::equal(v.transform(docs).to_dense(), back.transform(docs).to_dense()));
  const auto err = [&](nlohmann::json j, torch::Tensor t) -> std::string {
    try {
      TfidfVectorizer::from_json(j, t, "m.json");
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(err(v.to_json(), idf.slice(0, 0, 2)).find("'idf' must have shape [3]"),
            std::string::npos);
  auto dup = v.to_json();
  dup["vocab"] = {"a", "b", "a"};
  EXPECT_NE(err(dup, idf).find("term 'a' appears twice"), std::string::npos);
  auto missing = v.to_json();
  missing.erase("min_df");
  EXPECT_NE(err(missing, idf).find("m.json: malformed tfidf settings"), std::string::npos);
  EXPECT_NE(err(v.to_json(), -idf).find("not finite and positive"), std::string::npos);
}

}  // namespace
}  // namespace btx
