// btx's one exception type. Library code throws it with a message that names the file, key or
// value at fault and what was expected; only main() catches it and turns it into one line and a
// non-zero exit. No exit() below main.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace btx {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace btx

// BTX_CHECK(cond, "fmt", args...): throw btx::Error with the formatted message when cond is false.
#define BTX_CHECK(cond, ...)    \
  do {                          \
    if (!(cond)) {              \
      ::btx::fail(__VA_ARGS__); \
    }                           \
  } while (0)
