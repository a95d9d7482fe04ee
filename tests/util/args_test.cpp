// Declared command arguments (util/args.h): the command line written from a struct holds the
// arguments that differ from its defaults, in declaration order; read back, it gives the same
// struct; words that are no option, options given twice or without a value, and declared
// options not allowed where they are read, are errors naming them.
#include "btx/util/args.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace btx {
namespace {

using testing::error_of;

struct Example {
  std::string run, model;
  bool resume = false, force = false;
  std::string train = "all";
  int64_t steps = 0;
  std::vector<std::string> models;
  std::map<std::string, std::string> params;
  template <typename V>
  void visit(V& v) {
    v.option("--run", run, "run");
    v.option("--model", model, "model");
    v.flag("--resume", resume, "resume");
    v.option("--train", train, "what trains");
    v.option("--steps", steps, "steps");
    v.option("--models", models, "models");
    v.params(params, {{"top-k", "experts per token"}});
    v.flag("--force", force, "force");
  }
};

TEST(Args, TheCommandLineHoldsWhatDiffersFromTheDefaultsInDeclarationOrder) {
  Example e;
  e.run = "runs/tiny";
  e.model = "merged/btx";
  e.resume = true;
  EXPECT_EQ(command_line("finetune", e),
            (std::vector<std::string>{"finetune", "--run", "runs/tiny", "--model", "merged/btx",
                                      "--resume"}));
  e.train = "router";
  e.steps = 400;
  e.models = {"seed", "merged/btx"};
  e.params = {{"top-k", "1"}, {"aux-loss", "0"}};
  e.force = true;
  EXPECT_EQ(
      command_line("x", e),
      (std::vector<std::string>{"x", "--run", "runs/tiny", "--model", "merged/btx", "--resume",
                                "--train", "router", "--steps", "400", "--models",
                                "seed,merged/btx", "--aux-loss", "0", "--top-k", "1", "--force"}));
  EXPECT_EQ(command_line("x", Example{}), std::vector<std::string>{"x"});
}

// What other commands declare: numbers of every kind, a path, a list of numbers, an option given
// once per value and a flag with a short alias.
struct Launchlike {
  std::filesystem::path out;
  int jobs = 1;
  double poll = 30;
  std::vector<int> gpus;
  std::vector<std::string> extra;
  bool slurm = false;
  template <typename V>
  void visit(V& v) {
    v.option("--out", out, "out");
    v.option("--jobs,-j", jobs, "jobs");
    v.option("--poll", poll, "poll");
    v.option("--gpus", gpus, "gpus");
    v.repeated("--extra", extra, "extra");
    v.flag("--slurm,-s", slurm, "slurm");
  }
};

TEST(Args, NumbersPathsListsAndRepeatedOptionsAreWrittenAsTheCliReadsThem) {
  Launchlike l;
  EXPECT_EQ(command_line("corpus build", l), (std::vector<std::string>{"corpus", "build"}));
  l.out = "corpora/a b";
  l.jobs = 3;
  l.poll = 0.5;
  l.gpus = {0, 2};
  l.extra = {"--gres=gpu:1", "--exclude=n1,n2"};
  l.slurm = true;
  EXPECT_EQ(command_line("launch", l),
            (std::vector<std::string>{"launch", "--out", "corpora/a b", "--jobs", "3", "--poll",
                                      "0.5", "--gpus", "0,2", "--extra=--gres=gpu:1",
                                      "--extra=--exclude=n1,n2", "--slurm"}));
  l = Launchlike{};
  l.poll = 30.0;  // the default, however it was reached
  l.jobs = 1;
  EXPECT_EQ(command_line("launch", l), std::vector<std::string>{"launch"});
}

TEST(Args, ReadingTheCommandLineBackGivesTheSameArguments) {
  Example e;
  e.run = "r";
  e.force = true;
  e.steps = 7;
  e.models = {"a", "b"};
  e.params = {{"top-k", "2"}};
  const auto line = command_line("x", e);
  Example back;
  ArgsReader reader({line.begin() + 1, line.end()});
  back.visit(reader);
  reader.finish();
  EXPECT_EQ(command_line("x", back), line);
  EXPECT_TRUE(back.force);
  EXPECT_FALSE(back.resume);
  EXPECT_EQ(back.steps, 7);
  EXPECT_EQ(back.params, e.params);
}

TEST(Args, BadWordsAreErrorsNamingThem) {
  auto read = [](std::vector<std::string> words, std::vector<std::string> allowed = {}) {
    return error_of([&] {
      Example e;
      ArgsReader reader(words, allowed);
      e.visit(reader);
      reader.finish();
    });
  };
  EXPECT_EQ(read({"top-k", "2"}), "expected --PARAM VALUE pairs after the method, got 'top-k'");
  EXPECT_EQ(read({"--model"}), "--model has no value");
  EXPECT_EQ(read({"--top-k"}), "--top-k has no value");
  EXPECT_EQ(read({"--model", "a", "--model", "b"}), "--model given twice");
  EXPECT_EQ(read({"--top-k", "1", "--top-k", "2"}), "--top-k given twice");
  EXPECT_EQ(read({"--steps", "two"}), "--steps 'two': expected an integer");
  EXPECT_EQ(read({"--run", "r"}, {"--model"}), "--run cannot be given here");
  EXPECT_EQ(read({"--force"}, {"--model"}), "--force cannot be given here");
  EXPECT_EQ(read({"--model", "m", "--force"}, {"--model", "--force"}), "");
}

}  // namespace
}  // namespace btx
