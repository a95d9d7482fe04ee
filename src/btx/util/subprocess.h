// Runs an external program without a shell (posix_spawnp, argv as given, so no quoting issues)
// and captures its stdout and stderr. Used where a standard tool does the job better than
// re-implementing it (man, tar, apt-get). It does not run pipelines, feed stdin or time out.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace btx {

struct RunOptions {
  // Variables set for the child. With inherit_env, they are added to (or replace) this
  // process's environment; without it, the child gets only PATH, HOME, TMPDIR (when set here)
  // plus these, so that user settings (MANOPT, GREP_OPTIONS, ...) cannot change its output.
  std::map<std::string, std::string> env;
  bool inherit_env = false;
};

struct RunResult {
  int exit_code = -1;  // the exit status; 128 + signal number when killed by a signal
  std::string out;     // everything written to stdout
  std::string err;     // everything written to stderr
};

// Runs argv[0] (looked up in PATH) and waits for it. Throws btx::Error only when the program
// cannot be started at all (e.g. not installed); a non-zero exit is reported in the result.
RunResult run_process(const std::vector<std::string>& argv, const RunOptions& opts = {});

// Like run_process, but a non-zero exit throws btx::Error naming `what` (e.g. the domain being
// built), the command line and the tail of its stderr. Returns stdout.
std::string check_output(const std::vector<std::string>& argv, const std::string& what,
                         const RunOptions& opts = {});

// The command line as a user would type it in a shell (for messages).
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace btx
