// What the export writers share: the destination (a file or stdout, written
// through one buffer), progress on stderr, and one entry point per format.
// Each writer streams: it holds a row, a batch or a per-thread stack of open
// slices, never the whole trace.
#ifndef SHMTRACE_TOOLS_EXPORT_FORMAT_HPP
#define SHMTRACE_TOOLS_EXPORT_FORMAT_HPP

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <string>
#include <string_view>
#include <type_traits>

#include "query/span_scan.hpp"

namespace shmtrace::cli::exporting {

// stdout when the path is "" or "-". Write failures are kept and reported
// once by finish(), naming the file.
class Output {
 public:
  static std::expected<Output, std::string> open(const std::string& path);
  Output(Output&& o) noexcept;
  Output& operator=(Output&&) = delete;
  ~Output();
  void write(std::string_view bytes);
  std::uint64_t bytes() const { return bytes_; }
  const std::string& name() const { return name_; }
  std::expected<void, std::string> finish();

 private:
  Output() = default;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string name_;
  std::uint64_t bytes_ = 0;
};

// "shmtrace export: N spans, M MiB written" every second on stderr, when
// enabled (stderr is a terminal, or --progress), and a last line with
// ", done" after a long export; asked for (--progress), the last line comes
// whatever the export's length, so scripts can read the count.
class Progress {
 public:
  Progress(bool enabled, bool asked)
      : enabled_(enabled || asked), printed_(asked), last_(std::chrono::steady_clock::now()) {}
  void span(const Output& out) {
    ++spans_;
    if (enabled_ && (spans_ & 1023) == 0) maybe_print(out, false);
  }
  void done(const Output& out) {
    if (enabled_) maybe_print(out, true);
  }
  std::uint64_t spans() const { return spans_; }

 private:
  void maybe_print(const Output& out, bool last);
  bool enabled_;
  std::uint64_t spans_ = 0;
  bool printed_ = false;
  std::chrono::steady_clock::time_point last_;
};

struct Context {
  query::SpanScan& scan;
  Output& out;
  Progress& progress;
};

// Every row of one of the scan's streams (`next`: &query::SpanScan::next_span,
// next_error, ...), read into one reused row and handed to `each` in the
// scan's order. Stops at the scan's error, or at the first error `each`
// returns when it returns std::expected.
template <class Row, class Each>
std::expected<void, std::string> each_row(query::SpanScan& scan,
                                          std::expected<bool, std::string> (query::SpanScan::*next)(Row&),
                                          Each&& each) {
  Row row;
  while (true) {
    auto more = (scan.*next)(row);
    if (!more) return std::unexpected(more.error());
    if (!*more) return {};
    if constexpr (std::is_void_v<std::invoke_result_t<Each&, const Row&>>) {
      each(std::as_const(row));
    } else if (auto done = each(std::as_const(row)); !done) {
      return done;
    }
  }
}

std::expected<void, std::string> write_chrome(Context& c);
std::expected<void, std::string> write_perfetto(Context& c);

struct OtlpOptions {
  std::string endpoint;       // "": JSON Lines to the output
  double timeout_s = 10;      // per batch, retries included
  std::size_t batch_spans = 512;
};
std::expected<void, std::string> write_otlp(Context& c, const OtlpOptions& options);

}  // namespace shmtrace::cli::exporting

#endif
