// Helpers for end-to-end tests: run the btx binary, read metrics, prepare a tiny seeded run.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "btx/util/fs.h"

namespace btx::testing {

struct CommandResult {
  int code;
  std::string output;  // stdout and stderr together
};

// Runs `btx ARGS`; `env` (e.g. "A=1 B=2") is set for that command only.
inline CommandResult run_btx(const std::string& args, const std::string& env = "") {
  static int counter = 0;
  const std::string out_file =
      fs::temp_directory_path() /
      ("btx-e2e-out-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  const std::string cmd = (env.empty() ? "" : "env " + env + " ") + std::string(BTX_BINARY) + " " +
                          args + " > " + out_file + " 2>&1";
  const int status = std::system(cmd.c_str());
  CommandResult r{WEXITSTATUS(status), read_file(out_file)};
  fs::remove(out_file);
  return r;
}

inline std::vector<nlohmann::json> read_metrics(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::istringstream in(read_file(file));
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace btx::testing
