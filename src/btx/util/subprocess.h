// Runs an external program without a shell (posix_spawnp, argv as given, so no quoting issues)
// and captures its stdout and stderr. Used where a standard tool does the job better than
// re-implementing it (man, tar, apt-get). It does not run pipelines, feed stdin or time out.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <optional>
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

// Whether `program` is an executable file in one of PATH's folders.
bool on_path(const std::string& program);

// Like run_process, but a non-zero exit throws btx::Error naming `what` (e.g. the domain being
// built), the command line and the tail of its stderr. Returns stdout.

std::string check_output(const std::vector<std::string>& argv, const std::string& what,
                         const RunOptions& opts = {});

// Starts argv[0] (a path, or looked up in PATH) in the background with stdin from /dev/null and
// stdout and stderr appended to `log`; its environment is ours without the variables named in
// `unset`, plus `env`. Returns the child's pid; a program that cannot start is a btx::Error.
pid_t spawn_to_log(const std::vector<std::string>& argv, const std::filesystem::path& log,
                   const std::map<std::string, std::string>& env = {},
                   const std::vector<std::string>& unset = {});

// Whether a child of spawn_to_log has ended, without blocking: nullopt while it runs, else its
// exit status (128 + signal number when killed by a signal). Reaps the child.
std::optional<int> poll_exit(pid_t pid);

// The command line as a user would type it in a shell (for messages).
std::string shell_join(const std::vector<std::string>& argv);

}  // namespace btx
