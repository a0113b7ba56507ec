// The export's destination and its progress line.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "export_format.hpp"

namespace shmtrace::cli::exporting {

std::expected<Output, std::string> Output::open(const std::string& path) {
  Output o;
  if (path.empty() || path == "-") {
    o.file_ = stdout;
    o.name_ = "stdout";
  } else {
    o.file_ = std::fopen(path.c_str(), "wb");
    if (o.file_ == nullptr) return std::unexpected(path + ": " + std::strerror(errno));
    o.owned_ = true;
    o.name_ = path;
  }
  // One large buffer: the writers hand over small pieces.
  std::setvbuf(o.file_, nullptr, _IOFBF, 1 << 20);
  return o;
}

Output::Output(Output&& o) noexcept
    : file_(std::exchange(o.file_, nullptr)), owned_(o.owned_), name_(std::move(o.name_)), bytes_(o.bytes_) {}

Output::~Output() {
  if (owned_ && file_ != nullptr) std::fclose(file_);
}

void Output::write(std::string_view bytes) {
  if (bytes.empty()) return;
  std::fwrite(bytes.data(), 1, bytes.size(), file_);
  bytes_ += bytes.size();
}

std::expected<void, std::string> Output::finish() {
  const bool failed = std::fflush(file_) != 0 || std::ferror(file_) != 0;
  const int saved = errno;
  if (owned_) {
    const bool close_failed = std::fclose(file_) != 0;
    file_ = nullptr;
    if (failed || close_failed) return std::unexpected(name_ + ": " + std::strerror(failed ? saved : errno));
  } else if (failed) {
    return std::unexpected(name_ + ": " + std::strerror(saved));
  }
  return {};
}

void Progress::maybe_print(const Output& out, bool last) {
  const auto now = std::chrono::steady_clock::now();
  if (!last && now - last_ < std::chrono::seconds(1)) return;
  if (last && !printed_) return;  // a short export says nothing
  last_ = now;
  printed_ = true;
  std::fprintf(stderr, "shmtrace export: %llu spans, %.1f MiB written%s\n", static_cast<unsigned long long>(spans_),
               static_cast<double>(out.bytes()) / (1024.0 * 1024.0), last ? ", done" : "");
}

}  // namespace shmtrace::cli::exporting
