// The study's analysis and HTML report at tiny size: `btx analyze` writes a routed model's
// routing (domain x expert usage, per-token samples of every training and novel domain) and an
// ensemble's updating posterior, checked against invariants and a recomputation; `btx report`
// writes one self-contained page, rendered in headless Chromium with no console message or
// script error, showing the results table, heatmaps, token views and drawn charts. Token text
// like "</script><b>" stays text.
#include "btx/analysis/report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <regex>
#include <sstream>

#include "btx/analysis/analysis.h"
#include "btx/analysis/routing.h"
#include "btx/analysis/sweep_report.h"
#include "btx/eval/ensemble.h"
#include "btx/train/checkpoint.h"
#include "btx/util/fs.h"
#include "e2e_util.h"
#include "test_util.h"
#include "tiny_corpus.h"

namespace btx {
namespace {

using testing::run_btx;
using testing::TempDir;

// ---- headless Chromium ---------------------------------------------------------------------

std::string find_chromium() {
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    if (std::system(("command -v " + std::string(name) + " > /dev/null 2>&1").c_str()) == 0)
      return name;
  }
  return "";
}

// Skips the test when Chromium is missing, except in CI where that is a failure.
#define REQUIRE_CHROMIUM(var)                                                                    \
  const std::string var = find_chromium();                                                       \
  if (var.empty()) {                                                                             \
    if (std::getenv("CI") != nullptr) FAIL() << "chromium is needed in CI to render the report"; \
    GTEST_SKIP() << "chromium not found: install it with: apt-get install chromium";             \
  }

struct Rendered {
  int code = 0;
  std::string dom;   // the DOM after the page's scripts ran (--dump-dom)
  std::string log;   // Chromium's stderr: its own logs and the page's console, as CONSOLE lines
  std::string html;  // the <html ...> start tag of the DOM, where the page records its state
};

// Renders `page` headless: the DOM, and a screenshot to `png` when given.
Rendered render(const std::string& chromium, const fs::path& page, const fs::path& work,
                const fs::path& png = {}) {
  static int calls = 0;
  const fs::path profile = work / ("chrome-profile-" + std::to_string(calls++));
  const std::string flags =
      " --headless --no-sandbox --disable-gpu --disable-background-networking "
      "--disable-component-update --disable-sync --no-first-run --disable-default-apps "
      "--enable-logging=stderr --v=0 --hide-scrollbars --user-data-dir=" +
      profile.string();
  const fs::path dom = work / "dom.html", log = work / "chrome.log";
  Rendered r;
  std::string cmd = "timeout 120 " + chromium + flags + " --dump-dom file://" +
                    fs::absolute(page).string() + " > " + dom.string() + " 2> " + log.string();
  r.code = WEXITSTATUS(std::system(cmd.c_str()));
  r.dom = read_file(dom);
  r.log = read_file(log);
  if (!png.empty()) {
    cmd = "timeout 120 " + chromium + flags +
          " --window-size=1400,2400 --screenshot=" + png.string() + " file://" +
          fs::absolute(page).string() + " >> " + log.string() + " 2>&1";
    EXPECT_EQ(WEXITSTATUS(std::system(cmd.c_str())), 0) << read_file(log);
    r.log = read_file(log);
  }
  const size_t start = r.dom.find("<html");
  if (start != std::string::npos) r.html = r.dom.substr(start, r.dom.find('>', start) - start);
  return r;
}

// Any message the page logged (the report logs none, so each is a warning or an error) and any
// uncaught exception shows up as a CONSOLE line; Chromium's own logs (dbus, gpu) do not count.
std::vector<std::string> console_lines(const std::string& log) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    if (line.find(":CONSOLE") != std::string::npos) out.push_back(line);
  }
  return out;
}

void expect_clean_render(const Rendered& r) {
  EXPECT_EQ(r.code, 0) << r.log;
  EXPECT_EQ(console_lines(r.log), std::vector<std::string>{});
  EXPECT_NE(r.html.find("data-rendered=\"1\""), std::string::npos) << r.html;
  EXPECT_EQ(r.html.find("data-errors"), std::string::npos) << r.html;  // window.onerror & co
  EXPECT_EQ(r.dom.find("class=\"errors\""), std::string::npos);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

double sum(const nlohmann::json& values) {
  double s = 0;
  for (const auto& v : values) s += v.get<double>();
  return s;
}

// ---- a tiny study with a novel domain ------------------------------------------------------

class ReportTest : public ::testing::Test {
 protected:
  // Seed, three experts, a finetuned BTX MoE and an ensemble of the experts, all evaluated; one
  // novel domain ("notes") that no expert trains on.
  static void SetUpTestSuite() {
    dir_ = new TempDir("btx-report");
    const fs::path corpus = testing::make_tiny_corpus(dir_->path() / "corpus", 80'000);
    testing::write_text(corpus / "notes.txt", testing::tiny_domain_text(0, 60'000, 99));
    std::string config = testing::tiny_run_config(corpus, 40, 30);
    const std::string domains = "domains = [\"code\", \"prose\", \"verse\"]\n";
    config.replace(config.find(domains), domains.size(), domains + "novel = [\"notes\"]\n");
    testing::write_text(dir_->path() / "run.toml", config);
    const std::string r_ = " --run " + run().root.string();
    for (const std::string& cmd :
         {"seed --config " + (dir_->path() / "run.toml").string() + r_, "branch" + r_,
          "launch" + r_ + " --jobs 2", "merge" + r_ + " --method btx",
          "finetune" + r_ + " --model merged/btx --steps 4",
          "merge" + r_ + " --method ensemble --prior cached --name ensemble-all",
          "eval" + r_ + " --model seed,merged/btx,merged/ensemble-all"}) {
      auto res = run_btx(cmd);
      ASSERT_EQ(res.code, 0) << cmd << "\n" << res.output;
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  static RunDir run() { return RunDir{dir_->path() / "study"}; }
  // A copy of the study for one test to change.
  static RunDir fresh_run(const std::string& name) {
    const fs::path to = dir_->path() / name;
    fs::copy(run().root, to, fs::copy_options::recursive);
    return RunDir{to};
  }
  static TempDir* dir_;
};
TempDir* ReportTest::dir_ = nullptr;

TEST_F(ReportTest, AnalysisOfRoutedModelsAndEnsembles) {
  const RunDir r = fresh_run("analysis");
  const std::string r_ = " --run " + r.root.string();
  EXPECT_TRUE(has_analysis(ModelFolder::open(r.root / "merged/btx")));
  EXPECT_TRUE(has_analysis(ModelFolder::open(r.root / "merged/ensemble-all")));
  EXPECT_FALSE(has_analysis(ModelFolder::open(r.seed())));
  auto res = run_btx("analyze" + r_ + " --model seed");
  EXPECT_NE(res.code, 0);
  EXPECT_NE(res.output.find("nothing to analyse"), std::string::npos) << res.output;

  res = run_btx("analyze" + r_);  // every routed model and ensemble of merged/
  ASSERT_EQ(res.code, 0) << res.output;
  const int64_t T = 32;  // the run's seq_len: samples are at most one window
  const std::vector<std::string> domains = {"code", "prose", "verse", "notes"};

  // The MoE: usage rows sum to 1 per layer (top-1) and to k (chosen); each sampled token has its
  // piece and, per layer, k experts whose gates sum to 1.
  const auto a = read_json_file(analysis_path(r, "btx"));
  EXPECT_EQ(a["kind"], "routing");
  EXPECT_EQ(a["model"], "btx");
  EXPECT_EQ(a["domains"], nlohmann::json(domains));
  EXPECT_EQ(a["novel_domains"], nlohmann::json::array({"notes"}));
  EXPECT_EQ(a["experts"], nlohmann::json::array({"code", "prose", "verse"}));
  const int64_t k = a["top_k"];
  ASSERT_EQ(a["layers"].size(), 2u);
  for (const auto& layer : a["layers"]) {
    for (const auto& d : domains) {
      EXPECT_NEAR(sum(layer["top1"][d]), 1.0, 1e-9) << d;
      EXPECT_NEAR(sum(layer["topk"][d]), static_cast<double>(k), 1e-9) << d;
      EXPECT_NEAR(sum(layer["mean_weight"][d]), 1.0, 1e-5) << d;
    }
    EXPECT_FALSE(layer["own_expert_top1"].contains("notes"));  // no expert of its own
  }
  for (const auto& d : domains) {
    const auto& tokens = a["samples"][d];
    ASSERT_EQ(static_cast<int64_t>(tokens.size()), std::min(kAnalysisSampleTokens, T)) << d;
    for (const auto& t : tokens) {
      ASSERT_TRUE(t["piece"].is_string());
      ASSERT_EQ(t["layers"].size(), 2u);
      for (const auto& l : t["layers"]) {
        ASSERT_EQ(static_cast<int64_t>(l["experts"].size()), k);
        EXPECT_NEAR(sum(l["weights"]), 1.0, 1e-5);
        for (const auto& e : l["experts"]) {
          EXPECT_GE(e.get<double>(), 0);
          EXPECT_LT(e.get<double>(), 3);
        }
      }
    }
  }

  // The ensemble: posterior rows sum to 1 and start uniform; the last row equals Bayes' rule
  // over the experts' likelihoods of the whole sample, recomputed here.
  const auto e = read_json_file(analysis_path(r, "ensemble-all"));
  EXPECT_EQ(e["kind"], "ensemble");
  EXPECT_EQ(e["model"], "ensemble-all");
  EXPECT_EQ(e["domains"], nlohmann::json(domains));
  ASSERT_EQ(e["experts"], nlohmann::json::array({"code", "prose", "verse"}));
  const int64_t n = std::min(kAnalysisPosteriorTokens, T);
  const RunConfig c = load_run(r);
  std::vector<CausalLM> experts;
  for (const auto& name : {"code", "prose", "verse"}) {
    experts.push_back(load_model(r.root / "experts" / name));
    experts.back()->eval();
  }
  torch::NoGradGuard no_grad;
  for (const auto& w : analysis_windows(btx::Run(r, c), run_novel_domains(c), 1)) {
    const auto& s = e["samples"][w.domain];
    ASSERT_EQ(static_cast<int64_t>(s["pieces"].size()), n + 1) << w.domain;
    ASSERT_EQ(static_cast<int64_t>(s["posterior"].size()), n) << w.domain;
    for (const auto& row : s["posterior"]) EXPECT_NEAR(sum(row), 1.0, 1e-9);
    for (const auto& p : s["posterior"][0]) EXPECT_NEAR(p.get<double>(), 1.0 / 3, 1e-12);
    // Row n-1 weighs the experts by p(x_1..x_{n-1} | expert).
    const auto x = w.windows.narrow(0, 0, 1).narrow(1, 0, n);
    std::vector<double> loglik;
    for (auto& m : experts) loglik.push_back(-token_nll(m, x).sum().item<double>());
    const double top = *std::max_element(loglik.begin(), loglik.end());
    double z = 0;
    for (double l : loglik) z += std::exp(l - top);
    for (size_t j = 0; j < 3; ++j) {
      EXPECT_NEAR(s["posterior"][n - 1][j].get<double>(), std::exp(loglik[j] - top) / z, 1e-4)
          << w.domain << " expert " << j;
    }
  }
}

TEST_F(ReportTest, ReportRendersInHeadlessChromium) {
  const RunDir r = fresh_run("report");
  const std::string r_ = " --run " + r.root.string();
  TempDir work("btx-report-render");

  // No results yet: the error names the file and the command that makes it.
  auto res = run_btx("report" + r_);
  EXPECT_NE(res.code, 0);
  EXPECT_NE(res.output.find((r.root / "results.json").string() + " is missing"), std::string::npos)
      << res.output;
  EXPECT_NE(res.output.find("btx results --run " + r.root.string()), std::string::npos)
      << res.output;

  ASSERT_EQ(run_btx("results" + r_).code, 0);
  // Before any analysis the page still renders, and says how to add the missing views.
  const std::string bare = render_report(r);
  EXPECT_NE(bare.find("No analysis of btx"), std::string::npos);
  EXPECT_NE(bare.find("btx analyze --run " + r.root.string() + " --model merged/btx"),
            std::string::npos);

  ASSERT_EQ(run_btx("analyze" + r_).code, 0);
  ASSERT_EQ(run_btx("analyze" + r_ + " --divergence").code, 0);
  ASSERT_EQ(run_btx("barrier" + r_ + " --pairs --points 3 --tokens 256").code, 0);
  res = run_btx("report" + r_);
  ASSERT_EQ(res.code, 0) << res.output;
  const fs::path page = r.root / "report.html";
  ASSERT_TRUE(fs::exists(page));
  const std::string html = read_file(page);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);  // nothing from the network
  EXPECT_NE(html.find("Chart.js v3"), std::string::npos);
  // --out writes elsewhere, the same page.
  ASSERT_EQ(run_btx("report" + r_ + " --out " + (work / "copy.html").string()).code, 0);
  EXPECT_EQ(read_file(work / "copy.html"), html);

  REQUIRE_CHROMIUM(chromium);
  const fs::path png = work / "report.png";
  const Rendered out = render(chromium, page, work.path(), png);
  expect_clean_render(out);
  // The results table with a row per model.
  EXPECT_NE(out.dom.find("id=\"results-table\""), std::string::npos);
  for (const char* m : {"seed", "btx", "ensemble-all"}) {
    EXPECT_NE(out.dom.find(std::string("<tr data-model=\"") + m + "\""), std::string::npos) << m;
  }
  // The routed model's heatmaps (one table per layer), its token view, the ensemble's prior.
  EXPECT_EQ(count(out.dom, "<table class=\"heatmap\" data-layer="), 2u);
  EXPECT_NE(out.dom.find("data-kind=\"prior\""), std::string::npos);
  EXPECT_GE(count(out.dom, "<span class=\"tok"), 4u * 32u);
  // Charts that Chart.js drew: it sizes each canvas (width/height and an inline style).
  const std::regex drawn("<canvas[^>]*data-chart=\"drawn\"[^>]*>");
  std::vector<std::string> canvases;
  for (auto it = std::sregex_iterator(out.dom.begin(), out.dom.end(), drawn);
       it != std::sregex_iterator(); ++it) {
    canvases.push_back(it->str());
  }
  // Why merging fails: the divergence's bars and layers and its cosine table, the barriers'
  // chart and table, the token gains' table for the routed model and the ensemble.
  EXPECT_NE(out.dom.find("id=\"why\""), std::string::npos);
  EXPECT_NE(out.dom.find("data-kind=\"cosine\""), std::string::npos);
  EXPECT_NE(out.dom.find("data-kind=\"barriers\""), std::string::npos);
  EXPECT_NE(out.dom.find("expert-code → expert-prose"), std::string::npos);
  const size_t gains = out.dom.find("data-kind=\"token-gain\"");
  ASSERT_NE(gains, std::string::npos);
  for (const char* m : {"btx", "ensemble-all"}) {
    EXPECT_NE(out.dom.find(std::string("<tr data-model=\"") + m + "\"", gains), std::string::npos)
        << m;
  }
  // perplexity 3 (means, the gap to the ensemble, per domain), training 5 (seed, experts x2,
  // finetuning x2), routing 2, posteriors 4, why 6 (divergence 2, barriers 1, gains 2, router 1)
  EXPECT_GE(canvases.size(), 20u);
  EXPECT_NE(out.dom.find("Gap to the ensemble of all experts vs training tokens"),
            std::string::npos);
  EXPECT_NE(out.dom.find(">vs ensemble-all<"), std::string::npos);  // the table's column
  EXPECT_NE(out.dom.find(">95% CI<"), std::string::npos);  // the intervals' column (whiskers drawn)
  for (const auto& cv : canvases) {
    EXPECT_NE(cv.find("box-sizing: border-box"), std::string::npos) << cv;
    EXPECT_TRUE(std::regex_search(cv, std::regex(" width=\"[1-9][0-9]*\""))) << cv;
  }
  // The screenshot, kept for people to look at.
  ASSERT_TRUE(fs::exists(png));
  EXPECT_GT(fs::file_size(png), 20'000u);
  EXPECT_EQ(read_file(png).substr(1, 3), "PNG");
  fs::copy_file(png, "/tmp/btx-report.png", fs::copy_options::overwrite_existing);
}

// The sweep's page (btx sweep): a chart and a table per measure, every point's row.
TEST(SweepPage, RendersInHeadlessChromium) {
  TempDir work("btx-sweep-render");
  std::vector<SweepPointResult> points;
  for (const char* v : {"0.1", "0.5", "0.9"}) {
    const fs::path run = work.path() / (std::string("seed_share=") + v);
    fs::create_directories(run);
    const double s = std::stod(v);
    const nlohmann::json results = {{"rows",
                                     {{{"model", "average"},
                                       {"train_mean_ppl", 150 - 40 * s},
                                       {"train_mean_ppl_ci", {140 - 40 * s, 152 - 40 * s}},
                                       {"novel_mean_ppl", 350.0},
                                       {"gap_to_ensemble_all", 0.5 - s / 2}},
                                      {{"model", "ensemble-all"},
                                       {"train_mean_ppl", 100 + 10 * s},
                                       {"novel_mean_ppl", 320.0}}}},
                                    {"findings", {"a finding <b>not bold</b>"}}};
    testing::write_text(run / "results.json", results.dump());
    points.push_back({std::string("seed_share=") + v,
                      {{"seed_share", v}},
                      run,
                      61.0 + s,
                      static_cast<int64_t>(s * 1e6),
                      static_cast<int64_t>((1 - s) * 1e6)});
  }
  const auto sweep = sweep_results({{"seed_share", {"0.1", "0.5", "0.9"}}}, points);
  EXPECT_EQ(sweep["models"], (nlohmann::json{"average", "ensemble-all"}));
  EXPECT_NEAR(sweep["points"][1]["seed_share"].get<double>(), 0.5, 1e-12);
  const std::string md = sweep_markdown(sweep);
  EXPECT_NE(md.find("| average | 146.00 (136.00-148.00) | 130.00 (120.00-132.00) | **114.00** "
                    "(104.00-116.00) |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("| ensemble-all | **101.00** | 105.00 | 109.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| seed_share=0.5 | 0.50M | 0.50M | 50.0% | 1m01s |"), std::string::npos) << md;
  write_sweep(work.path(), sweep);
  REQUIRE_CHROMIUM(chromium);
  const Rendered out = render(chromium, work.path() / "sweep.html", work.path());
  expect_clean_render(out);
  EXPECT_EQ(count(out.dom, "data-chart=\"drawn\""), 3u);  // training, novel, gap
  EXPECT_EQ(count(out.dom, "<tr data-model=\"average\""), 3u);
  EXPECT_EQ(count(out.dom, "<tr data-model=\"ensemble-all\""), 2u);  // it has no gap
  EXPECT_NE(out.dom.find("a finding &lt;b&gt;not bold&lt;/b&gt;"), std::string::npos);
}

// The study under several seeds (a sweep of random_seed): each row's mean and spread over seeds,
// and in how many seeds each ordering held, by hand; the page shows them.
TEST(SweepPage, SeedsGiveEachRowsSpreadAndHowOftenEachOrderingHeld) {
  TempDir work("btx-sweep-seeds");
  const std::vector<std::pair<double, double>> train = {{100, 101}, {104, 103}, {102, 106}};
  std::vector<SweepPointResult> points;
  for (size_t i = 0; i < train.size(); ++i) {
    const std::string v = std::to_string(i + 1);
    const fs::path run = work.path() / ("random_seed=" + v);
    fs::create_directories(run);
    const nlohmann::json results = {
        {"rows",
         {{{"model", "a"}, {"train_mean_ppl", train[i].first}, {"novel_mean_ppl", 300.0}},
          {{"model", "b"}, {"train_mean_ppl", train[i].second}, {"novel_mean_ppl", 310.0}}}}};
    testing::write_text(run / "results.json", results.dump());
    points.push_back({"random_seed=" + v, {{"random_seed", v}}, run, 60.0, 1000, 3000});
  }
  const auto sweep = sweep_results({{"random_seed", {"1", "2", "3"}}}, points);
  ASSERT_TRUE(sweep.contains("seeds"));
  const auto& a = sweep["seeds"]["rows"]["a"]["train_mean_ppl"];
  EXPECT_DOUBLE_EQ(a["mean"].get<double>(), 102.0);
  EXPECT_DOUBLE_EQ(a["sd"].get<double>(), 2.0);  // deviations -2, 2, 0: sqrt(8 / 2)
  EXPECT_DOUBLE_EQ(a["min"].get<double>(), 100.0);
  EXPECT_DOUBLE_EQ(a["max"].get<double>(), 104.0);
  const nlohmann::json train_order = {
      {"better", "a"}, {"worse", "b"}, {"column", "train_mean_ppl"}, {"held", 2}, {"of", 3}};
  const nlohmann::json novel_order = {
      {"better", "a"}, {"worse", "b"}, {"column", "novel_mean_ppl"}, {"held", 3}, {"of", 3}};
  EXPECT_EQ(sweep["seeds"]["orderings"], nlohmann::json::array({train_order, novel_order}));
  const std::string md = sweep_markdown(sweep);
  EXPECT_NE(md.find("| a | 102.00 ± 2.00 [100.00-104.00] | 300.00 ± 0.00 [300.00-300.00] |"),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("1 of 2 pairs of rows"), std::string::npos) << md;
  EXPECT_NE(md.find("- a below b (training domains): in 2 of 3 seeds"), std::string::npos) << md;
  // Another swept key has no seed summary: its points differ on purpose.
  EXPECT_FALSE(sweep_results({{"seed_share", {"1", "2", "3"}}}, points).contains("seeds"));
  write_sweep(work.path(), sweep);
  REQUIRE_CHROMIUM(chromium);
  const Rendered out = render(chromium, work.path() / "sweep.html", work.path());
  expect_clean_render(out);
  EXPECT_NE(out.dom.find("data-kind=\"seeds\""), std::string::npos);
  EXPECT_NE(out.dom.find("a below b (training domains): in 2 of 3 seeds"), std::string::npos);
}

// ---- escaping, without a run ---------------------------------------------------------------

// The smallest data a page can show: one model, one domain, a routing sample of one token.
nlohmann::json hostile_data(const std::string& text) {
  nlohmann::json row = {{"model", "m" + text},   {"causal", true},        {"ppl", {{"d", 2.0}}},
                        {"train_mean_ppl", 2.0}, {"params_total", 10},    {"params_active", 10},
                        {"flops_per_token", 20}, {"training_tokens", 100}};
  nlohmann::json layer = {{"layer", 0},
                          {"top1", {{"d", {1.0, 0.0}}}},
                          {"topk", {{"d", {1.0, 0.0}}}},
                          {"entropy", {{"d", 0.1}}},
                          {"mean_weight", {{"d", {0.9, 0.1}}}},
                          {"own_expert_top1", nlohmann::json::object()}};
  nlohmann::json analysis = {
      {"kind", "routing"},
      {"model", "m" + text},
      {"experts", {"e" + text, "f"}},
      {"domains", {"d"}},
      {"novel_domains", nlohmann::json::array()},
      {"top_k", 1},
      {"model_type", "mixtral"},
      {"router_mode", "top-k"},
      {"layers", {layer}},
      {"samples",
       {{"d", {{{"piece", text}, {"layers", {{{"experts", {0}}, {"weights", {1.0}}}}}}}}}}};
  return {{"run", "run" + text},
          {"results",
           {{"train_domains", {"d"}},
            {"novel_domains", nlohmann::json::array()},
            {"rows", {row}},
            {"best", {{"d", "m" + text}}},
            {"findings", {"finding " + text}}}},
          {"choices", nlohmann::json::object()},
          {"curves", nlohmann::json::array()},
          {"analysis", {{"m" + text, analysis}}},
          {"notes", {"note " + text}}};
}

TEST(ReportEscaping, TokenTextStaysText) {
  const std::string text = "</script><b>x</b><!-- & \"q\" \xff";
  const auto data = hostile_data(text);
  const std::string html = render_report_html(data);
  // The page's own four script elements end where they should: the data adds no "</script".
  EXPECT_EQ(count(html, "</script>"), 4u);
  EXPECT_EQ(html.find("<b>x"), std::string::npos);
  EXPECT_EQ(html.find("<!-- &"), std::string::npos);
  // The blob parses back to the data (the invalid byte as U+FFFD).
  const std::string open = "id=\"btx-data\">";
  const size_t from = html.find(open) + open.size();
  const auto back = nlohmann::json::parse(html.substr(from, html.find("</script>", from) - from));
  EXPECT_EQ(back["analysis"].begin().value()["samples"]["d"][0]["piece"],
            "</script><b>x</b><!-- & \"q\" \xef\xbf\xbd");

  REQUIRE_CHROMIUM(chromium);
  TempDir work("btx-report-escape");
  // After the report's script, count the page's <b> elements: text parsed as HTML would add one.
  std::string probe = html;
  probe.insert(probe.rfind("</body>"),
               "<script>document.documentElement.setAttribute('data-b-elements', "
               "document.getElementsByTagName('b').length)</script>\n");
  write_file_atomic(work / "page.html", probe);
  const Rendered out = render(chromium, work / "page.html", work.path());
  expect_clean_render(out);
  EXPECT_NE(out.html.find("data-b-elements=\"0\""), std::string::npos) << out.html;
  // Shown as text: the token, the model's row, the run's title, the finding, the note.
  EXPECT_NE(out.dom.find("<span class=\"tok\""), std::string::npos);
  EXPECT_GE(count(out.dom, "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"), 5u);
  EXPECT_EQ(count(out.dom, "<table class=\"heatmap\" data-layer="), 1u);
}

}  // namespace
}  // namespace btx
