// btx's UTF-8 validator (util/utf8.h) against an independent decoder, glibc's iconv (UTF-8 to
// UTF-32LE, which refuses overlong forms, surrogates and code points above U+10FFFF as RFC 3629
// does): on any bytes both must agree on whether they are valid and where the first bad
// character starts, and check_utf8 must throw btx's error exactly when they are not.
#include <iconv.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "btx/util/error.h"
#include "btx/util/utf8.h"

namespace {

// The offset where iconv stops (the first byte it cannot decode), or npos when it decodes all.
size_t iconv_invalid_at(const std::string& s) {
  static const iconv_t cd = iconv_open("UTF-32LE", "UTF-8");
  if (cd == reinterpret_cast<iconv_t>(-1)) std::abort();
  iconv(cd, nullptr, nullptr, nullptr, nullptr);  // the initial state
  std::vector<char> out(4 * s.size() + 16);
  char* in = const_cast<char*>(s.data());
  size_t in_left = s.size();
  char* o = out.data();
  size_t out_left = out.size();
  if (iconv(cd, &in, &in_left, &o, &out_left) != static_cast<size_t>(-1)) {
    return std::string::npos;
  }
  return static_cast<size_t>(in - s.data());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string s(reinterpret_cast<const char*>(data), size);
  const size_t ours = btx::utf8_invalid_at(s);
  if (ours != iconv_invalid_at(s)) std::abort();
  bool threw = false;
  try {
    btx::check_utf8(s, "fuzz input");
  } catch (const btx::Error& e) {
    threw = true;
    // The message names the offset, and says what is wrong.
    if (std::string(e.what()).find("byte " + std::to_string(ours) + " is ") == std::string::npos) {
      std::abort();
    }
  }
  if (threw != (ours != std::string::npos)) std::abort();
  return 0;
}
