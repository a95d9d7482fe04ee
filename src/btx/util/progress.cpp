#include "btx/util/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>

namespace btx {

std::string format_eta(double s) {
  if (!(s >= 0) || s > 1e7) return "";
  const auto x = static_cast<int64_t>(s);
  return x >= 3600 ? fmt::format("{}h{:02}m", x / 3600, (x / 60) % 60)
                   : fmt::format("{}m{:02}s", x / 60, x % 60);
}

std::string format_duration(double s) {
  if (!(s >= 0)) return "?";
  if (s < 60) return fmt::format("{:.1f}s", s);
  return format_eta(s);
}

LiveView::LiveView(std::FILE* out, double plain_interval)
    : LiveView(out, plain_interval, ::isatty(::fileno(out)) == 1) {}

LiveView::LiveView(std::FILE* out, double plain_interval, bool tty)
    : out_(out),
      plain_interval_(plain_interval),
      tty_(tty),
      last_plain_(std::chrono::steady_clock::now() - std::chrono::hours(1)) {}

void LiveView::clear_block() {
  // Up one line and erase it, once per drawn line.
  for (size_t i = 0; i < drawn_; ++i) std::fputs("\x1b[1A\x1b[2K", out_);
  drawn_ = 0;
}

void LiveView::draw_block() {
  for (const auto& l : block_) std::fprintf(out_, "%s\n", l.c_str());
  drawn_ = block_.size();
  std::fflush(out_);
}

void LiveView::update(const std::vector<std::string>& lines, bool force) {
  block_ = lines;
  if (tty_) {
    clear_block();
    draw_block();
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  const bool due = std::chrono::duration<double>(now - last_plain_).count() >= plain_interval_;
  if (lines.empty() || lines == printed_ || !(force || due)) return;
  for (const auto& l : lines) std::fprintf(out_, "%s\n", l.c_str());
  std::fflush(out_);
  printed_ = lines;
  last_plain_ = now;
}

void LiveView::print(const std::string& line) {
  if (tty_) clear_block();
  std::fprintf(out_, "%s\n", line.c_str());
  if (tty_) draw_block();
  std::fflush(out_);
}

}  // namespace btx
