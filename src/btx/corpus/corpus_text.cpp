// Byte repair, document layout and the small non-dictd parsers of corpus_text.h. Everything
// here is deterministic string work; the dictd/GCIDE side lives in corpus_dictd.cpp.
#include "btx/corpus/corpus_text.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "btx/util/error.h"
#include "btx/util/utf8.h"

namespace btx {

namespace {

// Drops the last UTF-8 character of `out` unless it is a newline (overstrike: "x\b_").
void pop_last_char(std::string& out) {
  if (out.empty() || out.back() == '\n') return;
  size_t n = out.size() - 1;
  while (n > 0 && (static_cast<unsigned char>(out[n]) >> 6) == 0x2) --n;
  out.resize(n);
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

std::string to_clean_text(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  size_t i = 0;
  if (raw.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // byte order mark
  while (i < raw.size()) {
    const size_t len = utf8_char_len(raw, i);
    if (len == 0) {
      ++i;
      continue;
    }
    const char c = raw[i];
    if (len == 1 && c == '\b') {
      pop_last_char(out);
    } else if (len > 1 || c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7F)) {
      out.append(raw.substr(i, len));
    }
    i += len;
  }
  return out;
}

std::string normalize_document(std::string_view text, bool collapse_blank_lines) {
  std::string out;
  out.reserve(text.size());
  size_t pending_blank = 0;  // blank lines seen since the last non-blank one
  for (std::string_view line : split_lines(text)) {
    if (is_blank(line)) {
      ++pending_blank;
      continue;
    }
    line = line.substr(0, line.find_last_not_of(" \t") + 1);
    if (!out.empty()) {
      const size_t blanks =
          collapse_blank_lines ? std::min<size_t>(pending_blank, 1) : pending_blank;
      out.append(1 + blanks, '\n');
    }
    out.append(line);
    pending_blank = 0;
  }
  return out;
}

void DomainTextBuilder::add(std::string_view raw, bool collapse_blank_lines) {
  const std::string doc = normalize_document(to_clean_text(raw), collapse_blank_lines);
  if (doc.empty()) return;
  if (!text_.empty()) text_ += "\n\n";
  text_ += doc;
  ++documents_;
}

std::string DomainTextBuilder::finish() && {
  if (!text_.empty()) text_ += '\n';
  return std::move(text_);
}

std::string read_gzip(const fs::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  BTX_CHECK(f != nullptr, "cannot open {}: {}", path.string(), std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int err = Z_OK;
  const std::string msg = n < 0 ? gzerror(f, &err) : "";
  gzclose(f);
  BTX_CHECK(n == 0, "cannot decompress {}: {}", path.string(), msg);
  return out;
}

std::vector<std::string> split_fortunes(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (std::string_view line : split_lines(text)) {
    if (line == "%" || line == "%\r") {
      if (!is_blank(cur)) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.append(line).push_back('\n');
    }
  }
  if (!is_blank(cur)) out.push_back(std::move(cur));
  return out;
}

std::string strip_c_licence_comment(std::string_view src) {
  const size_t start = src.find_first_not_of(" \t\n");
  if (start == std::string_view::npos || src.substr(start, 2) != "/*") return std::string(src);
  const size_t end = src.find("*/", start + 2);
  if (end == std::string_view::npos) return std::string(src);
  const std::string_view comment = src.substr(start + 2, end - start - 2);
  if (comment.find("Copyright") == std::string_view::npos &&
      comment.find("License") == std::string_view::npos) {
    return std::string(src);
  }
  // The description is what comes before the first line naming the copyright or licence.
  std::string desc;
  for (std::string_view line : split_lines(comment)) {
    if (line.find("Copyright") != std::string_view::npos ||
        line.find("License") != std::string_view::npos ||
        line.find("This file is part of") != std::string_view::npos) {
      break;
    }
    const size_t a = line.find_first_not_of(" \t*");
    if (a == std::string_view::npos) continue;
    line = line.substr(a, line.find_last_not_of(" \t") + 1 - a);
    desc += (desc.empty() ? "" : "\n   ") + std::string(line);
  }
  std::string_view rest = src.substr(end + 2);
  rest.remove_prefix(std::min(rest.size(), rest.find_first_not_of(" \t\n")));
  if (desc.empty()) return std::string(rest);
  return "/* " + desc + "  */\n\n" + std::string(rest);
}

std::string software_license_text(std::string_view pm) {
  const size_t tag = pm.find("\n__LICENSE__\n");
  if (tag == std::string_view::npos) return "";
  std::string_view body = pm.substr(tag + 13);
  for (std::string_view line : split_lines(body)) {  // the section ends at the next __NAME__
    if (line.size() > 4 && line.substr(0, 2) == "__" && line.substr(line.size() - 2) == "__") {
      body = body.substr(0, static_cast<size_t>(line.data() - body.data()));
      break;
    }
  }
  // Render {{ }} templates; '\x01' marks where one rendered to nothing, so that a line holding
  // only such a reference (a heading like "--- {{ $self->_gpl->name }} ---") can be dropped.
  std::string text;
  size_t pos = 0;
  for (size_t b; (b = body.find("{{", pos)) != std::string_view::npos;) {
    const size_t e = body.find("}}", b + 2);
    if (e == std::string_view::npos) break;
    const std::string_view t = body.substr(b + 2, e - b - 2);
    text.append(body.substr(pos, b - pos));
    if (const size_t h = t.find("<<'"); h != std::string_view::npos) {
      const std::string_view rest = t.substr(h + 3);
      const std::string end_tag = "\n" + std::string(rest.substr(0, rest.find('\'')));
      const size_t from = t.find('\n', h) + 1;
      text.append(t.substr(from, t.find(end_tag, from) + 1 - from));
    } else if (t.find("holder") != std::string_view::npos) {
      text += "the copyright holder";
    } else if (t.find("year") != std::string_view::npos) {
      text += "<year>";
    } else {
      text += '\x01';
    }
    pos = e + 2;
  }
  text.append(body.substr(pos));
  std::string out;
  for (std::string_view view : split_lines(text)) {
    std::string line(view);
    if (line.find('\x01') != std::string::npos) {
      line.erase(std::remove(line.begin(), line.end(), '\x01'), line.end());
      if (std::none_of(line.begin(), line.end(),
                       [](unsigned char c) { return std::isalnum(c) != 0; }))
        continue;
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace btx
