// The exported C API (include/shmtrace/shmtrace.h). Each entry point checks
// the runtime, then the thread's sampling state, then does its work on the
// thread's own ring. Nothing here throws, locks or allocates.
#include <execinfo.h>

#include <cstring>

#include "clock.hpp"
#include "exception_hook.hpp"
#include "shmtrace/shmtrace.h"
#include "spans.hpp"
#include "thread_state.hpp"

using namespace shmtrace;
using namespace shmtrace::runtime;

namespace {

// The runtime and a ready thread state, or nullptr: disabled, inside a
// sampled-out trace, or a thread that cannot record.
inline Runtime* recording_thread(ThreadState& t) noexcept {
  Runtime* rt = current_runtime();
  if (rt == nullptr || shmtrace_unsampled_depth_ != 0) return nullptr;
  if (__builtin_expect(t.status != ThreadStatus::kReady, 0) && !ensure_thread(t, *rt)) return nullptr;
  return rt;
}

inline abi::Record base_record(abi::RecordKind kind, std::uint32_t name, const ThreadState& t) noexcept {
  abi::Record r{};
  r.kind = static_cast<std::uint8_t>(kind);
  r.name_id = name;
  r.timestamp = now_ticks();
  r.span_id = current_span(t);
  return r;
}

// Writes a text or byte value: the head record carries the first 32 bytes,
// continuation records 56 bytes each (abi.hpp).
void emit_value(ThreadState& t, Runtime& rt, abi::Record head, const char* data, std::size_t length) noexcept {
  if (data == nullptr) length = 0;
  if (length > rt.max_value_bytes) {
    length = rt.max_value_bytes;
    if (head.kind == static_cast<std::uint8_t>(abi::RecordKind::kArg)) head.flags |= abi::kArgTruncated;
  }
  head.aux = length;
  const std::size_t inline_bytes = std::min<std::size_t>(length, abi::kInlinePayload);
  head.size = static_cast<std::uint16_t>(inline_bytes);
  if (inline_bytes > 0) std::memcpy(head.payload, data, inline_bytes);
  if (length <= abi::kInlinePayload) {
    emit_one(t, rt, head);
    return;
  }
  abi::Record* out = t.scratch;
  out[0] = head;
  std::uint32_t count = 1;
  for (std::size_t at = inline_bytes; at < length; at += abi::kContinuationPayload, ++count) {
    abi::ContinuationRecord c{};
    c.kind = static_cast<std::uint8_t>(abi::RecordKind::kContinuation);
    c.index = count;
    c.size = static_cast<std::uint16_t>(std::min<std::size_t>(length - at, abi::kContinuationPayload));
    std::memcpy(c.bytes, data + at, c.size);
    std::memcpy(&out[count], &c, sizeof c);
  }
  emit(t, rt, out, count);
}

// Values recorded under a sensitive name are written as "***" (P9), whatever
// their type. Returns true when it wrote the masked value.
bool emit_masked(ThreadState& t, Runtime& rt, abi::Record r, std::uint8_t direction) noexcept {
  if ((rt.strings->flags(r.name_id) & abi::kStringSensitive) == 0) return false;
  r.flags = static_cast<std::uint8_t>(static_cast<std::uint8_t>(abi::ValueType::kString) | direction |
                                      abi::kArgMasked);
  emit_value(t, rt, r, "***", 3);
  return true;
}

void emit_arg_scalar(shmtrace_name_t name, abi::ValueType type, std::uint8_t direction, std::uint64_t bits) noexcept {
  ThreadState& t = tls_state;
  Runtime* rt = recording_thread(t);
  if (rt == nullptr) return;
  abi::Record r = base_record(abi::RecordKind::kArg, name, t);
  if (emit_masked(t, *rt, r, direction)) return;
  r.flags = static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | direction);
  r.aux = bits;
  emit_one(t, *rt, r);
}

void emit_arg_text(shmtrace_name_t name, abi::ValueType type, std::uint8_t direction, const char* data,
                   std::size_t length) noexcept {
  ThreadState& t = tls_state;
  Runtime* rt = recording_thread(t);
  if (rt == nullptr) return;
  abi::Record r = base_record(abi::RecordKind::kArg, name, t);
  if (emit_masked(t, *rt, r, direction)) return;
  r.flags = static_cast<std::uint8_t>(static_cast<std::uint8_t>(type) | direction);
  emit_value(t, *rt, r, data, length);
}

template <class T>
std::uint64_t bits_of(T value) noexcept {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof value);
  return bits;
}

void emit_counter(shmtrace_name_t name, abi::ValueType type, std::uint64_t bits) noexcept {
  ThreadState& t = tls_state;
  Runtime* rt = recording_thread(t);
  if (rt == nullptr) return;
  abi::Record r = base_record(abi::RecordKind::kCounter, name, t);
  r.flags = static_cast<std::uint8_t>(type);
  r.aux = bits;
  emit_one(t, *rt, r);
}

constexpr std::uint8_t kIn = 0;
constexpr std::uint8_t kOut = abi::kArgResult;

}  // namespace

extern "C" {

// The inline fast path's state (shmtrace.h): 1 until the runtime turns off.
SHMTRACE_API int shmtrace_may_record_ = 1;
SHMTRACE_API __thread uint32_t shmtrace_unsampled_depth_ __attribute__((tls_model("initial-exec"))) = 0;

SHMTRACE_API int shmtrace_enabled(void) { return current_runtime() != nullptr ? 1 : 0; }

SHMTRACE_API shmtrace_name_t shmtrace_intern_n(const char* name, size_t length) {
  Runtime* rt = current_runtime();
  if (rt == nullptr || name == nullptr) return 0;
  return rt->intern(std::string_view(name, length));
}

SHMTRACE_API shmtrace_name_t shmtrace_intern(const char* name) {
  return name == nullptr ? 0 : shmtrace_intern_n(name, std::strlen(name));
}

SHMTRACE_API shmtrace_span_t shmtrace_span_begin_group(shmtrace_name_t group, shmtrace_name_t name) {
  Runtime* rt = current_runtime();
  if (rt == nullptr) return 0;
  return begin_span(tls_state, *rt, group, name, 0);
}

SHMTRACE_API shmtrace_span_t shmtrace_span_begin(shmtrace_name_t name) {
  return shmtrace_span_begin_group(0, name);
}

SHMTRACE_API void shmtrace_span_end_status(shmtrace_span_t span, int status) {
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  ThreadState& t = tls_state;
  if (shmtrace_unsampled_depth_ != 0) {
    end_unsampled_span(t, *rt, status == SHMTRACE_OK ? SHMTRACE_OK : SHMTRACE_ERR);
    return;
  }
  if (t.depth == 0) return;  // an end without a begin on this thread
  if (__builtin_expect(t.stack[t.depth - 1].span_id != span, 0)) {
    // Ending a span below the top: the spans above it were left open
    // (closed as unfinished).
    std::uint32_t at = t.depth;
    while (at > 0 && t.stack[at - 1].span_id != span) --at;
    if (at == 0) return;  // not ours (or already ended): ignore
    close_spans_above(t, *rt, at);
  }
  end_top_span(t, *rt, status == SHMTRACE_OK ? SHMTRACE_OK : SHMTRACE_ERR);
}

SHMTRACE_API void shmtrace_span_end(shmtrace_span_t span) { shmtrace_span_end_status(span, SHMTRACE_OK); }

SHMTRACE_API void shmtrace_span_end_exception(shmtrace_span_t span) {
  Runtime* rt = current_runtime();
  if (rt == nullptr) return;
  ThreadState& t = tls_state;
  if (t.status != ThreadStatus::kReady && !ensure_thread(t, *rt)) return;
  const std::uint64_t sequence = record_thrown_exception(t, *rt);
  if (shmtrace_unsampled_depth_ != 0) {
    end_unsampled_span(t, *rt, SHMTRACE_ERR);
    return;
  }
  for (std::uint32_t at = t.depth; at > 0; --at) {
    if (t.stack[at - 1].span_id == span) {
      t.stack[at - 1].error_ref = static_cast<std::uint32_t>(sequence);
      break;
    }
  }
  shmtrace_span_end_status(span, SHMTRACE_ERR);
}

SHMTRACE_API void shmtrace_event_status(shmtrace_name_t name, int status, const char* message) {
  ThreadState& t = tls_state;
  Runtime* rt = recording_thread(t);
  if (rt == nullptr) return;
  abi::Record r = base_record(abi::RecordKind::kEvent, name, t);
  r.flags = status == SHMTRACE_OK ? 0 : abi::kStatusErr;
  emit_value(t, *rt, r, message, message == nullptr ? 0 : std::strlen(message));
}

SHMTRACE_API void shmtrace_event(shmtrace_name_t name, const char* message) {
  shmtrace_event_status(name, SHMTRACE_OK, message);
}

SHMTRACE_API void shmtrace_counter_i64(shmtrace_name_t name, int64_t value) {
  emit_counter(name, abi::ValueType::kInt, bits_of(value));
}

SHMTRACE_API void shmtrace_counter_f64(shmtrace_name_t name, double value) {
  emit_counter(name, abi::ValueType::kDouble, bits_of(value));
}

SHMTRACE_API void shmtrace_arg_i64(shmtrace_name_t n, int64_t v) { emit_arg_scalar(n, abi::ValueType::kInt, kIn, bits_of(v)); }
SHMTRACE_API void shmtrace_arg_u64(shmtrace_name_t n, uint64_t v) { emit_arg_scalar(n, abi::ValueType::kUint, kIn, v); }
SHMTRACE_API void shmtrace_arg_f64(shmtrace_name_t n, double v) { emit_arg_scalar(n, abi::ValueType::kDouble, kIn, bits_of(v)); }
SHMTRACE_API void shmtrace_arg_bool(shmtrace_name_t n, int v) { emit_arg_scalar(n, abi::ValueType::kBool, kIn, v != 0); }
SHMTRACE_API void shmtrace_arg_strn(shmtrace_name_t n, const char* v, size_t len) { emit_arg_text(n, abi::ValueType::kString, kIn, v, len); }
SHMTRACE_API void shmtrace_arg_str(shmtrace_name_t n, const char* v) { shmtrace_arg_strn(n, v, v == nullptr ? 0 : std::strlen(v)); }
SHMTRACE_API void shmtrace_arg_bytes(shmtrace_name_t n, const void* v, size_t len) { emit_arg_text(n, abi::ValueType::kBytes, kIn, static_cast<const char*>(v), len); }
SHMTRACE_API void shmtrace_arg_repr(shmtrace_name_t n, const char* v, size_t len) { emit_arg_text(n, abi::ValueType::kRepr, kIn, v, len); }
SHMTRACE_API void shmtrace_result_i64(shmtrace_name_t n, int64_t v) { emit_arg_scalar(n, abi::ValueType::kInt, kOut, bits_of(v)); }
SHMTRACE_API void shmtrace_result_u64(shmtrace_name_t n, uint64_t v) { emit_arg_scalar(n, abi::ValueType::kUint, kOut, v); }
SHMTRACE_API void shmtrace_result_f64(shmtrace_name_t n, double v) { emit_arg_scalar(n, abi::ValueType::kDouble, kOut, bits_of(v)); }
SHMTRACE_API void shmtrace_result_bool(shmtrace_name_t n, int v) { emit_arg_scalar(n, abi::ValueType::kBool, kOut, v != 0); }
SHMTRACE_API void shmtrace_result_strn(shmtrace_name_t n, const char* v, size_t len) { emit_arg_text(n, abi::ValueType::kString, kOut, v, len); }
SHMTRACE_API void shmtrace_result_repr(shmtrace_name_t n, const char* v, size_t len) { emit_arg_text(n, abi::ValueType::kRepr, kOut, v, len); }

SHMTRACE_API uint64_t shmtrace_error(const char* type, const char* message) {
  Runtime* rt = current_runtime();
  if (rt == nullptr) return 0;
  ThreadState& t = tls_state;
  if (t.status != ThreadStatus::kReady) (void)ensure_thread(t, *rt);
  ErrorDraft d;
  // Errors are kept even inside a sampled-out trace, without a span link.
  describe_error(d, abi::ErrorKind::kExplicit, t, *rt);
  StackEntry* top = recorded_top(t);
  void* frames[abi::kMaxErrorFrames + 1];
  const int captured = rt->config.max_frames == 0 ? 0 : ::backtrace(frames, static_cast<int>(rt->config.max_frames) + 1);
  std::uint64_t addresses[abi::kMaxErrorFrames];
  std::uint32_t n = 0;
  for (int i = 1; i < captured && n < rt->config.max_frames; ++i) {  // frame 0 is this function
    addresses[n++] = reinterpret_cast<std::uint64_t>(frames[i]);
  }
  d.frames = addresses;
  d.frame_count = n;
  if (type != nullptr) d.type = type;
  if (message != nullptr) d.message = message;
  const std::uint64_t sequence = rt->errors->append(d);
  if (top != nullptr) top->error_ref = static_cast<std::uint32_t>(sequence);
  return sequence;
}

SHMTRACE_API int shmtrace_traceparent(char* buf, size_t size) {
  Runtime* rt = current_runtime();
  if (rt == nullptr || buf == nullptr) return -1;
  const ThreadState& t = tls_state;
  TraceParent context;
  if (t.depth > 0 && shmtrace_unsampled_depth_ == 0) {
    context.trace = t.trace;
    context.span_id = t.stack[t.depth - 1].span_id;
    context.flags = 1;
  } else if (t.has_explicit) {
    context = t.explicit_parent;
  } else if (rt->has_inherited) {
    context = rt->inherited;
  } else {
    return -1;
  }
  return format_traceparent(context, buf, size) ? 0 : -1;
}

SHMTRACE_API int shmtrace_set_traceparent(const char* traceparent) {
  if (traceparent == nullptr) return -1;
  const auto parsed = parse_traceparent(traceparent);
  if (!parsed) return -1;
  ThreadState& t = tls_state;
  t.explicit_parent = *parsed;
  t.has_explicit = true;
  return 0;
}

SHMTRACE_API const char* shmtrace_segment_name(void) {
  Runtime* rt = current_runtime();
  return rt == nullptr ? "" : rt->segment_name.c_str();
}

}  // extern "C"
