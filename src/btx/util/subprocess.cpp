// posix_spawnp + two pipes read with poll(), so a chatty stderr cannot block a large stdout.
// Pipes are close-on-exec: several threads may spawn at once without leaking each other's
// pipe ends into their children (which would delay end-of-file).
#include "btx/util/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "btx/util/error.h"

extern char** environ;

namespace btx {

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  for (std::string d; std::getline(dirs, d, ':');) {
    if (!d.empty() && ::access((std::filesystem::path(d) / program).c_str(), X_OK) == 0) {
      return true;
    }
  }
  return false;
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// The child's environment: ours (inherit_env) or a minimal one, without the variables in
// `unset`, with opts.env added.
std::vector<std::string> child_env(const RunOptions& opts,
                                   const std::vector<std::string>& unset = {}) {
  std::map<std::string, std::string> vars;
  if (opts.inherit_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (eq != nullptr) vars[std::string(*e, static_cast<size_t>(eq - *e))] = eq + 1;
    }
  } else {
    for (const char* k : {"PATH", "HOME", "TMPDIR"}) {
      if (const char* v = std::getenv(k)) vars[k] = v;
    }
  }
  for (const auto& k : unset) vars.erase(k);
  for (const auto& [k, v] : opts.env) vars[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : vars) out.push_back(k + "=" + v);
  return out;
}

// argv / envp for posix_spawn: pointers into `strings`, null-terminated.
std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// A waitpid status as an exit code: the exit status, or 128 + the signal number.
int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status)
                           : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// The end of a program's output as one line (an error message is one line): the last `n` bytes,
// line breaks and runs of blanks replaced by " | " and one space.
std::string tail(const std::string& s, size_t n) {
  const std::string t = s.size() > n ? "..." + s.substr(s.size() - n) : s;
  std::string out, line;
  auto flush = [&] {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) out += (out.empty() ? "" : " | ") + line;
    line.clear();
  };
  for (char c : t) {
    if (c == '\n' || c == '\r') {
      flush();
    } else if (c == '\t' || c == ' ' || static_cast<unsigned char>(c) < 0x20) {
      if (!line.empty() && line.back() != ' ') line += ' ';
    } else {
      line += c;
    }
  }
  flush();
  return out;
}

}  // namespace

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    const bool plain = !a.empty() && a.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                                         "OPQRSTUVWXYZ0123456789-_./:=,+@%") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    }
  }
  return out;
}

RunResult run_process(const std::vector<std::string>& argv, const RunOptions& opts) {
  BTX_CHECK(!argv.empty(), "run_process: empty command");
  Fd out_r, out_w, err_r, err_w;
  int p[2];
  BTX_CHECK(::pipe2(p, O_CLOEXEC) == 0, "pipe: {}", std::strerror(errno));
  out_r.fd = p[0];
  out_w.fd = p[1];
  BTX_CHECK(::pipe2(p, O_CLOEXEC) == 0, "pipe: {}", std::strerror(errno));
  err_r.fd = p[0];
  err_w.fd = p[1];

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.fd, 2);

  std::vector<char*> args = c_strings(argv);
  const std::vector<std::string> env = child_env(opts);
  std::vector<char*> envp = c_strings(env);

  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  BTX_CHECK(rc == 0, "cannot run `{}`: {} (is {} installed and in PATH?)", shell_join(argv),
            std::strerror(rc), argv[0]);
  out_w.reset();
  err_w.reset();

  RunResult res;
  pollfd fds[2] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}};
  std::string* sinks[2] = {&res.out, &res.err};
  int open_fds = 2;
  char buf[1 << 16];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll on `{}`: {}", shell_join(argv), std::strerror(errno));
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // the Fd guards close it
        --open_fds;
      }
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    BTX_CHECK(errno == EINTR, "waitpid on `{}`: {}", shell_join(argv), std::strerror(errno));
  }
  res.exit_code = exit_code_of(status);
  return res;
}

pid_t spawn_to_log(const std::vector<std::string>& argv, const std::filesystem::path& log,
                   const std::map<std::string, std::string>& env,
                   const std::vector<std::string>& unset) {
  BTX_CHECK(!argv.empty(), "spawn_to_log: empty command line");
  const std::vector<std::string> env_strings = child_env(RunOptions{env, true}, unset);
  std::vector<char*> cargv = c_strings(argv), cenv = c_strings(env_strings);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, cargv[0], &actions, nullptr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  BTX_CHECK(rc == 0, "cannot start {}: {}", argv[0], std::strerror(rc));
  return pid;
}

std::optional<int> poll_exit(pid_t pid) {
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  BTX_CHECK(r == pid, "waitpid({}): {}", pid, std::strerror(errno));
  return exit_code_of(status);
}

std::string check_output(const std::vector<std::string>& argv, const std::string& what,
                         const RunOptions& opts) {
  RunResult r = run_process(argv, opts);
  BTX_CHECK(r.exit_code == 0, "{}: `{}` failed with exit code {}{}{}", what, shell_join(argv),
            r.exit_code, r.err.empty() ? "" : ": ", tail(r.err, 800));
  return std::move(r.out);
}

}  // namespace btx
