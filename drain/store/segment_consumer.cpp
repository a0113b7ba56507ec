#include "store/segment_consumer.hpp"

#include <signal.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <string>

namespace shmtrace::drain {
namespace {

using abi::RecordKind;

std::string hex(const std::uint8_t* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  bool any = false;
  for (std::size_t i = 0; i < n; ++i) any |= bytes[i] != 0;
  if (!any) return out;
  for (std::size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

std::string text_of(const reader::Segment& s, std::uint32_t id) {
  auto t = s.string(id);
  return t ? std::string(*t) : std::string();
}

const char* error_kind(abi::ErrorKind k) {
  switch (k) {
    case abi::ErrorKind::kExplicit:
      return "explicit";
    case abi::ErrorKind::kException:
      return "exception";
    case abi::ErrorKind::kCrash:
      return "crash";
    case abi::ErrorKind::kSpanError:
      return "span_error";
  }
  return "unknown";
}

const char* value_type(std::uint8_t flags) {
  switch (static_cast<abi::ValueType>(flags & abi::kValueTypeMask)) {
    case abi::ValueType::kInt:
      return "int";
    case abi::ValueType::kUint:
      return "uint";
    case abi::ValueType::kDouble:
      return "double";
    case abi::ValueType::kBool:
      return "bool";
    case abi::ValueType::kString:
      return "string";
    case abi::ValueType::kBytes:
      return "bytes";
    case abi::ValueType::kRepr:
      return "repr";
  }
  return "unknown";
}

// A scalar value (in aux) as exact text.
std::string scalar(std::uint8_t type, std::uint64_t bits) {
  switch (static_cast<abi::ValueType>(type & abi::kValueTypeMask)) {
    case abi::ValueType::kInt:
      return std::to_string(static_cast<std::int64_t>(bits));
    case abi::ValueType::kUint:
      return std::to_string(bits);
    case abi::ValueType::kBool:
      return bits != 0 ? "true" : "false";
    case abi::ValueType::kDouble: {
      double d = 0;
      std::memcpy(&d, &bits, sizeof d);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", d);
      return buf;
    }
    default:
      return {};
  }
}

bool is_scalar(std::uint8_t flags) {
  const auto t = static_cast<abi::ValueType>(flags & abi::kValueTypeMask);
  return t == abi::ValueType::kInt || t == abi::ValueType::kUint || t == abi::ValueType::kDouble ||
         t == abi::ValueType::kBool;
}

// /proc/<pid>/stat field 22, 0 when the pid does not exist.
std::uint64_t start_ticks_of(std::uint32_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::size_t pos = close + 2;
  for (int field = 3; field < 22 && pos < stat.size(); ++field) pos = stat.find(' ', pos) + 1;
  return std::strtoull(stat.c_str() + pos, nullptr, 10);
}

class Converter {
 public:
  Converter(const reader::Segment& s, Store& store, std::int64_t key, SegmentConsumer& names)
      : s_(s), store_(store), key_(key), names_(names) {}

  StoreResult<void> store(const reader::DecodedRecord& d, std::uint32_t ring, std::uint64_t position,
                          std::uint32_t tid) {
    const reader::ClockConverter& clock = s_.clock();
    switch (d.kind) {
      case RecordKind::kSpanBegin: {
        SpanRow r;
        r.span_id = d.span_id;
        r.trace_id = hex(d.span.trace_id, 16);
        r.parent_span_id = d.aux;
        r.tid = tid;
        r.group = text_of(s_, d.span.group_id);
        r.name = names_.name_of(d.name_id);
        r.start_ns = clock.to_wall_ns(d.timestamp);
        r.code = d.span.parent_span_id;  // SpanBegin: the code address
        return store_.span_begin(key_, r);
      }
      case RecordKind::kSpanEnd: {
        SpanRow r;
        r.span_id = d.span_id;
        r.trace_id = hex(d.span.trace_id, 16);
        r.parent_span_id = d.span.parent_span_id;
        r.tid = tid;
        r.group = text_of(s_, d.span.group_id);
        r.name = names_.name_of(d.name_id);
        r.start_ns = clock.to_wall_ns(d.aux);
        r.duration_ns = d.timestamp >= d.aux ? clock.duration_ns(d.aux, d.timestamp) : 0;
        r.status = (d.flags & abi::kStatusErr) != 0 ? 1 : 0;
        r.error_sequence = d.span.error_ref;
        return store_.span_end(key_, r);
      }
      default:
        return store_.record(key_, row(d, ring, position, tid));
    }
  }

 private:
  RecordRow row(const reader::DecodedRecord& d, std::uint32_t ring, std::uint64_t position, std::uint32_t tid) {
    RecordRow r;
    r.ring = ring;
    r.position = position;
    r.ts_ns = s_.clock().to_wall_ns(d.timestamp);
    r.tid = tid;
    r.span_id = d.span_id;
    r.name = text_of(s_, d.name_id);
    r.flags = d.flags;
    switch (d.kind) {
      case RecordKind::kEvent:
        r.kind = "event";
        r.value = d.value;
        r.value_type = "string";
        break;
      case RecordKind::kCounter:
        r.kind = "counter";
        r.value = scalar(d.flags, d.aux);
        r.value_type = value_type(d.flags);
        break;
      case RecordKind::kArg:
        r.kind = (d.flags & abi::kArgResult) != 0 ? "result" : "arg";
        r.value = is_scalar(d.flags) ? scalar(d.flags, d.aux) : d.value;
        r.value_type = value_type(d.flags);
        break;
      case RecordKind::kDropMarker:
        r.kind = "gap";
        r.aux = static_cast<std::int64_t>(d.aux);
        r.value = std::to_string(s_.clock().to_wall_ns(d.drop.first_drop_timestamp)) + " " +
                  std::to_string(s_.clock().to_wall_ns(d.drop.last_drop_timestamp));
        break;
      case RecordKind::kThreadStart:
      case RecordKind::kThreadEnd:
        r.kind = d.kind == RecordKind::kThreadStart ? "thread_start" : "thread_end";
        r.name = std::string(d.thread.name, ::strnlen(d.thread.name, sizeof d.thread.name));
        r.aux = static_cast<std::int64_t>(d.aux);
        break;
      default:
        r.kind = abi::record_kind_name(d.kind);
        r.aux = static_cast<std::int64_t>(d.aux);
        break;
    }
    return r;
  }

  const reader::Segment& s_;
  Store& store_;
  std::int64_t key_;
  SegmentConsumer& names_;
};

}  // namespace

SegmentConsumer::SegmentConsumer(reader::Segment segment, std::int64_t key, reader::ErrorCursor cursor)
    : segment_(std::move(segment)), key_(key), cursor_(cursor) {}

StoreResult<SegmentConsumer> SegmentConsumer::open(reader::Segment segment, Store& store) {
  const abi::SegmentHeader& h = segment.header();
  ProcessRow row;
  row.segment = segment.name();
  row.pid = h.pid;
  row.ppid = h.ppid;
  row.exe = std::string(h.exe);
  for (std::uint32_t i = 0; i < h.cmdline_size && i < sizeof h.cmdline; ++i) {
    row.cmdline += h.cmdline[i] == '\0' ? ' ' : h.cmdline[i];
  }
  row.start_ns = static_cast<std::int64_t>(h.clock_ref_wall_ns);
  row.trace_id = hex(h.trace_id, 16);
  row.parent_span_id = h.parent_span_id;
  if (auto ok = store.begin(); !ok) return std::unexpected(ok.error());
  auto key = store.process(row);
  auto cursor = key ? store.error_cursor(*key) : StoreResult<std::vector<std::uint64_t>>(std::unexpected(key.error()));
  if (!key || !cursor) {
    store.rollback();
    return std::unexpected(key ? cursor.error() : key.error());
  }
  if (auto ok = store.commit(); !ok) return std::unexpected(ok.error());
  reader::ErrorCursor resume;
  if (cursor->size() == 3) {
    resume.chunk = static_cast<std::uint32_t>((*cursor)[0]);
    resume.offset = static_cast<std::uint32_t>((*cursor)[1]);
    resume.spill_offset = (*cursor)[2];
  }
  return SegmentConsumer(std::move(segment), *key, resume);
}

StoreResult<PassStats> SegmentConsumer::pass(Store& store) {
  PassStats stats;
  segment_.heartbeat();
  Converter convert(segment_, store, key_, *this);
  std::vector<reader::RingBatch> rings;
  std::optional<reader::OverflowBatch> overflow;
  reader::ErrorCursor next = cursor_;
  reader::DecodeStats decode_stats;

  auto stored = [&]() -> StoreResult<void> {
    // Errors first (SPEC D2), then rings, then overflow.
    auto errors = segment_.read_errors(cursor_, 65536);
    if (!errors) return std::unexpected(StoreError{errors.error().message});
    for (const reader::ErrorRecord& e : errors->errors) {
      ErrorRow r;
      r.sequence = e.sequence;
      r.ts_ns = segment_.clock().to_wall_ns(e.timestamp);
      r.kind = error_kind(e.kind);
      r.tid = e.tid;
      r.span_id = e.span_id;
      r.trace_id = hex(e.trace_id, 16);
      r.group = text_of(segment_, e.group_id);
      r.span_name = text_of(segment_, e.span_name_id);
      r.type = e.type;
      r.message = e.message;
      r.preview = e.preview;
      r.signal = e.signal;
      r.fault_address = e.fault_address;
      for (std::uint64_t f : e.frames) {
        char buf[24];
        std::snprintf(buf, sizeof buf, "%s0x%llx", r.frames.empty() ? "" : " ", static_cast<unsigned long long>(f));
        r.frames += buf;
      }
      if (auto ok = store.error(key_, r); !ok) return ok;
      ++stats.errors;
    }
    next = errors->next;
    if (auto ok = store.set_error_cursor(key_, next.chunk, next.offset, next.spill_offset); !ok) return ok;

    for (std::uint32_t ring = 0; ring < segment_.ring_count(); ++ring) {
      auto batch = segment_.read_ring(ring, 65536);
      if (!batch) return std::unexpected(StoreError{batch.error().message});
      if (batch->records.empty()) continue;
      if (!ring_tid_.contains(ring)) {
        if (auto info = segment_.ring_info(ring)) ring_tid_[ring] = info->tid;
      }
      std::uint64_t position = batch->first_position;
      for (const reader::DecodedRecord& d : reader::decode(batch->records, decode_stats)) {
        if (d.kind == RecordKind::kThreadStart) ring_tid_[ring] = static_cast<std::uint32_t>(d.aux);
        if (auto ok = convert.store(d, ring, position, ring_tid_[ring]); !ok) return ok;
        position += d.record_count;
      }
      stats.records += batch->records.size();
      rings.push_back(std::move(*batch));
    }
    auto batch = segment_.read_overflow(65536);
    if (!batch) return std::unexpected(StoreError{batch.error().message});
    std::size_t i = 0;
    while (i < batch->entries.size()) {
      // A group: a head and the continuations that follow it from one thread.
      std::size_t j = i + 1;
      while (j < batch->entries.size() &&
             batch->entries[j].record.kind == static_cast<std::uint8_t>(RecordKind::kContinuation) &&
             batch->entries[j].tid == batch->entries[i].tid) {
        ++j;
      }
      std::vector<abi::Record> group;
      for (std::size_t k = i; k < j; ++k) group.push_back(batch->entries[k].record);
      for (const reader::DecodedRecord& d : reader::decode(group, decode_stats)) {
        if (auto ok = convert.store(d, kOverflowRing, batch->entries[i].position, batch->entries[i].tid); !ok) {
          return ok;
        }
      }
      i = j;
    }
    stats.records += batch->entries.size();
    overflow = std::move(*batch);
    return {};
  };

  if (auto ok = store.begin(); !ok) return std::unexpected(ok.error());
  if (auto ok = stored(); !ok) {
    store.rollback();
    return std::unexpected(ok.error());
  }
  if (auto ok = store.commit(); !ok) {
    store.rollback();
    return std::unexpected(ok.error());
  }
  // Committed: only now may the producer reuse the slots.
  cursor_ = next;
  for (const reader::RingBatch& b : rings) {
    if (auto ok = segment_.commit_ring(b.ring, b.end_position); !ok) return std::unexpected(StoreError{ok.error().message});
  }
  if (overflow && !overflow->entries.empty()) {
    if (auto ok = segment_.commit_overflow(*overflow); !ok) return std::unexpected(StoreError{ok.error().message});
  }
  return stats;
}

const std::string& SegmentConsumer::name_of(std::uint32_t id) {
  auto known = names_.find(id);
  if (known != names_.end()) return known->second;
  std::string name = text_of(segment_, id);
  if (name.rfind("@0x", 0) == 0) {
    if (!resolver_) {
      std::vector<symbols::Module> modules;
      if (auto listed = segment_.modules()) {
        for (const reader::ModuleRecord& m : *listed) modules.push_back({m.path, m.base, m.size, m.build_id_hex});
      }
      if (auto made = symbols::Resolver::create(std::move(modules))) resolver_.emplace(std::move(*made));
    }
    if (resolver_) {
      // An address the resolver cannot name keeps its "@0x" form.
      if (auto symbol = resolver_->resolve(std::strtoull(name.c_str() + 3, nullptr, 16))) name = symbol->function;
    }
  }
  return names_.emplace(id, std::move(name)).first->second;
}

bool SegmentConsumer::image_gone() const {
  const abi::ProcessState state = segment_.state();
  if (state == abi::ProcessState::kExeced) return true;  // the pid now runs another image
  const abi::SegmentHeader& h = segment_.header();
  const bool same_process = ::kill(static_cast<pid_t>(h.pid), 0) == 0 &&
                            (h.process_start_ticks == 0 || start_ticks_of(h.pid) == h.process_start_ticks);
  return !same_process;
}

StoreResult<void> SegmentConsumer::finish(Store& store) {
  ProcessFate fate;
  switch (segment_.state()) {
    case abi::ProcessState::kRunning:
      fate.state = "vanished";  // killed without a word (SIGKILL) or never said
      break;
    case abi::ProcessState::kExited:
      fate.state = "exited";
      break;
    case abi::ProcessState::kCrashed:
      fate.state = "crashed";
      break;
    case abi::ProcessState::kExeced:
      fate.state = "execed";
      break;
  }
  fate.exit_status = segment_.exit_status();
  fate.end_ns = static_cast<std::int64_t>(segment_.header().clock_ref_wall_ns);
  if (auto live = reader::Segment::attach(segment_.name(), reader::Access::kReadOnly)) {
    fate.exec_target = text_of(*live, live->header().exec_target_id);
    if (live->header().end_ticks != 0) fate.end_ns = live->clock().to_wall_ns(live->header().end_ticks);
  }
  if (auto ok = store.begin(); !ok) return ok;
  if (auto ok = store.process_fate(key_, fate); !ok) {
    store.rollback();
    return ok;
  }
  if (auto ok = store.commit(); !ok) return ok;
  if (auto ok = segment_.unlink(); !ok) return std::unexpected(StoreError{ok.error().message});
  return {};
}

}  // namespace shmtrace::drain
