#include "store/spill_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

namespace shmtrace::drain {
namespace {

// The magic carries the payload's format version: "SPL2" frames add
// call_stats.self_ticks and errors.symbols to "SPL1"'s rows. A drain writes
// the newest and reads both (an SPL1 batch stores with self time 0 and
// unsymbolized errors).
constexpr std::uint32_t kFrameMagicV1 = 0x53504c31;  // "SPL1"
constexpr std::uint32_t kFrameMagic = 0x53504c32;    // "SPL2"
constexpr std::uint32_t kFormatVersion = kSpillFormatVersion;
constexpr std::size_t kFrameHeader = 16;

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

class Writer {
 public:
  void u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void str(const std::string& s) {
    u64(s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  std::vector<std::uint8_t> out;
};

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  std::uint64_t u64() {
    if (n_ - at_ < 8) return fail();
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p_[at_ + i]) << (8 * i);
    at_ += 8;
    return v;
  }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(u64()); }
  int i32() { return static_cast<int>(i64()); }
  std::string str() {
    const std::uint64_t size = u64();
    if (size > n_ - at_) return fail(), std::string();
    std::string s(reinterpret_cast<const char*>(p_ + at_), size);
    at_ += size;
    return s;
  }
  // A count of items that each take at least min_bytes: bounded by what is left.
  std::size_t count(std::size_t min_bytes) {
    const std::uint64_t n = u64();
    if (n > (n_ - at_) / min_bytes) return fail(), 0;
    return n;
  }
  bool ok() const { return ok_; }
  bool done() const { return at_ == n_; }

 private:
  std::uint64_t fail() {
    ok_ = false;
    at_ = n_;
    return 0;
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t at_ = 0;
  bool ok_ = true;
};

// One function per row type writes and reads the fields in the same order.
template <class IO>
void fields(IO& io, ProcessRow& r) {
  io(r.segment, r.pid, r.ppid, r.exe, r.cmdline, r.start_ns, r.trace_id, r.parent_span_id);
}
template <class IO>
void fields(IO& io, SpanRow& r) {
  std::int64_t has = r.duration_ns ? 1 : 0, duration = r.duration_ns.value_or(0);
  io(r.span_id, r.trace_id, r.parent_span_id, r.tid, r.group, r.name, r.start_ns, has, duration, r.status,
     r.error_sequence, r.code);
  r.duration_ns = has != 0 ? std::optional<std::int64_t>(duration) : std::nullopt;
}
template <class IO>
void fields(IO& io, SpanDataRow& r) {
  io(r.ring, r.position, r.span_id, r.kind, r.ts_ns, r.tid, r.name, r.value, r.value_type, r.flags);
}
template <class IO>
void fields(IO& io, ProcessEventRow& r) {
  io(r.ring, r.position, r.kind, r.ts_ns, r.tid, r.span_id, r.name, r.value, r.flags);
}
template <class IO>
void fields(IO& io, GapRow& r) {
  io(r.ring, r.position, r.tid, r.ts_ns, r.dropped, r.first_ns, r.last_ns);
}
template <class IO>
void fields(IO& io, ErrorRow& r) {
  io(r.sequence, r.ts_ns, r.kind, r.tid, r.span_id, r.trace_id, r.group, r.span_name, r.type, r.message, r.preview,
     r.signal, r.fault_address, r.frames);
  if (io.version >= 2) io(r.symbols);
}
template <class IO>
void fields(IO& io, CallStatsSnapshot& r) {
  io(r.ring, r.slot, r.tid, r.kind, r.name, r.code, r.ts_ns, r.calls, r.errors, r.unfinished, r.completed,
     r.total_ticks, r.min_ticks, r.max_ticks, r.histogram);
  if (io.version >= 2) io(r.self_ticks);
}
template <class IO>
void fields(IO& io, ErrorCursorRow& r) {
  io(r.chunk, r.offset, r.spill_offset);
}
template <class IO>
void fields(IO& io, ProcessFate& r) {
  io(r.state, r.exit_status, r.end_ns, r.exec_target, r.dropped_total);
}

struct Out {
  Writer& w;
  std::uint32_t version;
  void one(const std::string& s) { w.str(s); }
  template <class T>
  void one(const T& v) {
    w.u64(static_cast<std::uint64_t>(v));
  }
  template <class... T>
  void operator()(T&... v) {
    (one(v), ...);
  }
};

struct In {
  Reader& r;
  std::uint32_t version;
  void one(std::string& s) { s = r.str(); }
  template <class T>
  void one(T& v) {
    v = static_cast<T>(r.u64());
  }
  template <class... T>
  void operator()(T&... v) {
    (one(v), ...);
  }
};

// A list of rows: its count, then each row's fields.
template <class Row>
void rows(Out& out, std::vector<Row>& v) {
  out.w.u64(v.size());
  for (Row& r : v) fields(out, r);
}
template <class Row>
void rows(In& in, std::vector<Row>& v) {
  v.resize(in.r.count(8));
  for (Row& r : v) fields(in, r);
}

// An optional row: 1 and its fields, or 0.
template <class Row>
void optional_row(Out& out, std::optional<Row>& v) {
  out.w.u64(v ? 1 : 0);
  if (v) fields(out, *v);
}
template <class Row>
void optional_row(In& in, std::optional<Row>& v) {
  if (in.r.u64() == 0) return;
  v.emplace();
  fields(in, *v);
}

// A segment's rows, one list for writing and reading.
template <class IO>
void fields(IO& io, SegmentRows& s) {
  fields(io, s.process);
  rows(io, s.spans);
  rows(io, s.span_data);
  rows(io, s.events);
  rows(io, s.gaps);
  rows(io, s.errors);
  rows(io, s.call_stats);
  optional_row(io, s.cursor);
  optional_row(io, s.fate);
}

struct Frame {
  std::uint32_t version = 0;
  std::vector<std::uint8_t> payload;
  std::size_t size() const { return payload.size(); }
};

// The payload of the frame at `at`, checked (magic, length within the file,
// checksum); nothing when the frame is torn or corrupt.
std::optional<Frame> read_frame(int fd, std::uint64_t at, std::uint64_t file_size) {
  std::uint8_t header[kFrameHeader];
  if (at + kFrameHeader > file_size ||
      ::pread(fd, header, sizeof header, static_cast<off_t>(at)) != static_cast<ssize_t>(sizeof header)) {
    return std::nullopt;
  }
  std::uint32_t magic = 0, length = 0;
  std::uint64_t sum = 0;
  std::memcpy(&magic, header, 4);
  std::memcpy(&length, header + 4, 4);
  std::memcpy(&sum, header + 8, 8);
  if ((magic != kFrameMagic && magic != kFrameMagicV1) || length > file_size - at - kFrameHeader) return std::nullopt;
  std::vector<std::uint8_t> payload(length);
  if (::pread(fd, payload.data(), length, static_cast<off_t>(at + kFrameHeader)) != static_cast<ssize_t>(length) ||
      fnv1a(payload.data(), length) != sum) {
    return std::nullopt;
  }
  return Frame{magic == kFrameMagicV1 ? 1u : kFormatVersion, std::move(payload)};
}

}  // namespace

std::vector<std::uint8_t> serialize(const Batch& batch, std::uint32_t version) {
  Writer w;
  w.u64(batch.records);
  w.u64(batch.segments.size());
  Out out{w, version};
  for (const SegmentRows& s : batch.segments) fields(out, const_cast<SegmentRows&>(s));  // fields() only reads through Out
  return std::move(w.out);
}

std::expected<Batch, std::string> deserialize(const std::uint8_t* data, std::size_t size, std::uint32_t version) {
  if (version < 1 || version > kFormatVersion) {
    return std::unexpected("spilled batch format " + std::to_string(version) + " is not one this drain reads");
  }
  Reader r(data, size);
  Batch batch;
  batch.records = r.u64();
  batch.segments.resize(r.count(8));
  In in{r, version};
  for (SegmentRows& s : batch.segments) fields(in, s);
  if (!r.ok() || !r.done()) return std::unexpected(std::string("malformed spilled batch"));
  return batch;
}

std::expected<SpillFile, std::string> SpillFile::open(const std::string& path, std::uint64_t max_bytes) {
  SpillFile f;
  f.path_ = path;
  f.max_bytes_ = max_bytes;
  f.fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (f.fd_ < 0) return std::unexpected("cannot open spill file " + path + ": " + std::strerror(errno));
  // Walk the frames; cut a torn or corrupt tail.
  struct stat st {};
  if (::fstat(f.fd_, &st) != 0) return std::unexpected("cannot stat spill file " + path + ": " + std::strerror(errno));
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  std::uint64_t at = 0;
  while (at + kFrameHeader <= file_size) {
    const auto payload = read_frame(f.fd_, at, file_size);
    if (!payload) break;
    at += kFrameHeader + payload->size();
    ++f.batches_;
  }
  if (::ftruncate(f.fd_, static_cast<off_t>(at)) != 0) {
    return std::unexpected("cannot truncate spill file " + path + ": " + std::strerror(errno));
  }
  f.size_ = at;
  return f;
}

SpillFile::SpillFile(SpillFile&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      path_(std::move(o.path_)),
      max_bytes_(o.max_bytes_),
      size_(o.size_),
      batches_(o.batches_) {}
SpillFile& SpillFile::operator=(SpillFile&& o) noexcept {
  std::swap(fd_, o.fd_);
  std::swap(path_, o.path_);
  std::swap(max_bytes_, o.max_bytes_);
  std::swap(size_, o.size_);
  std::swap(batches_, o.batches_);
  return *this;
}
SpillFile::~SpillFile() {
  if (fd_ >= 0) ::close(fd_);
}

std::expected<void, std::string> SpillFile::append(const Batch& batch) {
  const std::vector<std::uint8_t> payload = serialize(batch, kFormatVersion);
  if (payload.size() > 0xffffffffu) return std::unexpected(std::string("batch too large to spill"));
  if (size_ + kFrameHeader + payload.size() > max_bytes_) {
    return std::unexpected("spill file " + path_ + " is full (" + std::to_string(size_) + " of " +
                           std::to_string(max_bytes_) + " bytes)");
  }
  std::vector<std::uint8_t> frame(kFrameHeader);
  const std::uint32_t magic = kFrameMagic, length = static_cast<std::uint32_t>(payload.size());
  const std::uint64_t sum = fnv1a(payload.data(), payload.size());
  std::memcpy(frame.data(), &magic, 4);
  std::memcpy(frame.data() + 4, &length, 4);
  std::memcpy(frame.data() + 8, &sum, 8);
  frame.insert(frame.end(), payload.begin(), payload.end());
  std::size_t done = 0;
  while (done < frame.size()) {
    const ssize_t n = ::pwrite(fd_, frame.data() + done, frame.size() - done, static_cast<off_t>(size_ + done));
    if (n <= 0) {
      const int e = errno;
      (void)::ftruncate(fd_, static_cast<off_t>(size_));  // nothing half-written stays
      return std::unexpected("cannot write spill file " + path_ + ": " + std::strerror(n < 0 ? e : ENOSPC));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0) {
    const int e = errno;
    (void)::ftruncate(fd_, static_cast<off_t>(size_));
    return std::unexpected("cannot sync spill file " + path_ + ": " + std::strerror(e));
  }
  size_ += frame.size();
  ++batches_;
  return {};
}

// Copies the frame at `at` (header and payload) to <path>.rejected, durably.
std::expected<void, std::string> SpillFile::keep_rejected(std::uint64_t at, std::size_t payload_size) const {
  const std::string target = path_ + ".rejected";
  std::vector<std::uint8_t> frame(kFrameHeader + payload_size);
  const int out = ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  bool ok = out >= 0 && ::pread(fd_, frame.data(), frame.size(), static_cast<off_t>(at)) ==
                            static_cast<ssize_t>(frame.size()) &&
            ::write(out, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()) && ::fdatasync(out) == 0;
  const int e = errno;
  if (out >= 0) ::close(out);
  if (!ok) return std::unexpected("cannot keep an unreadable spilled batch in " + target + ": " + std::strerror(e));
  return {};
}

std::expected<std::uint64_t, std::string> SpillFile::replay(
    const std::function<std::expected<void, std::string>(const Batch&)>& store,
    const std::function<void(const std::string& why)>& rejected) {
  std::uint64_t at = 0, replayed = 0;
  while (at < size_) {
    const auto payload = read_frame(fd_, at, size_);
    if (!payload) return std::unexpected("cannot read spill file " + path_ + " at offset " + std::to_string(at));
    auto batch = deserialize(payload->payload.data(), payload->size(), payload->version);
    if (!batch) {
      if (auto kept = keep_rejected(at, payload->size()); !kept) return std::unexpected(kept.error());
      if (rejected) {
        rejected(path_ + ": the batch at offset " + std::to_string(at) + " is unreadable (" + batch.error() +
                 "): kept in " + path_ + ".rejected");
      }
      at += kFrameHeader + payload->size();
      continue;
    }
    if (auto ok = store(*batch); !ok) return std::unexpected(ok.error());
    at += kFrameHeader + payload->size();
    ++replayed;
  }
  if (::ftruncate(fd_, 0) != 0 || ::fdatasync(fd_) != 0) {
    return std::unexpected("cannot empty spill file " + path_ + ": " + std::strerror(errno));
  }
  size_ = 0;
  batches_ = 0;
  return replayed;
}

}  // namespace shmtrace::drain
