// Progress output of long commands (`btx run`, `btx launch`): durations as people read them, and
// a live view that redraws a block of lines in place on a terminal and degrades to plain,
// appended lines (printed only when they change, at most every `plain_interval` seconds) when
// stdout is a file or a pipe, so logs stay readable.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace btx {

// "4m05s", "1h02m"; "" for a negative, unknown or absurd estimate.
std::string format_eta(double seconds);
// "12.3s", "4m05s", "1h02m".
std::string format_duration(double seconds);

class LiveView {
 public:
  // `tty`: redraw in place (default: whether `out` is a terminal).
  explicit LiveView(std::FILE* out = stdout, double plain_interval = 30.0);
  LiveView(std::FILE* out, double plain_interval, bool tty);
  // Replaces the live block with `lines`. On a terminal it is redrawn at once; otherwise the
  // lines are printed when they differ from the last printed ones and `plain_interval` has
  // passed (or `force`).
  void update(const std::vector<std::string>& lines, bool force = false);
  // A line printed once above the live block (it scrolls away with the history).
  void print(const std::string& line);
  bool tty() const { return tty_; }

 private:
  void clear_block();
  void draw_block();

  std::FILE* out_;
  double plain_interval_;
  bool tty_;
  std::vector<std::string> block_;    // what the live block shows now
  std::vector<std::string> printed_;  // plain mode: the last lines printed
  size_t drawn_ = 0;                  // terminal: lines of the block on screen
  std::chrono::steady_clock::time_point last_plain_;
};

}  // namespace btx
