/* shmtrace C API: the instrumentation surface other languages bind to.
 *
 * Every function is safe to call at any time, from any thread, before main
 * and after exit has started; none blocks (except under SHMTRACE_POLICY=block,
 * bounded by SHMTRACE_BLOCK_TIMEOUT_MS), allocates on the hot path, or throws.
 * When the runtime is disabled (SHMTRACE_DISABLE=1, or its segment could not
 * be created) every call is a cheap no-op and span ids are 0.
 *
 * Names are interned once: call shmtrace_intern() once per call site and keep
 * the id (the SHMTRACE_NAME macro does that for string literals).
 */
#ifndef SHMTRACE_SHMTRACE_H
#define SHMTRACE_SHMTRACE_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SHMTRACE_API __attribute__((visibility("default")))
#else
#define SHMTRACE_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* An interned name; 0 = no name (interning failed or the runtime is off). */
typedef uint32_t shmtrace_name_t;

/* A span handle: the span id, 0 when the span is not recorded. */
typedef uint64_t shmtrace_span_t;

enum shmtrace_status { SHMTRACE_OK = 0, SHMTRACE_ERR = 1 };

/* Length of a W3C traceparent string, "00-<32 hex>-<16 hex>-<2 hex>", plus NUL. */
#define SHMTRACE_TRACEPARENT_SIZE 56

/* 1 when records are being written, 0 when the runtime is a no-op. */
SHMTRACE_API int shmtrace_enabled(void);

/* Interns a name into the segment's string table; the same text returns the
 * same id within a process. */
SHMTRACE_API shmtrace_name_t shmtrace_intern(const char* name);
SHMTRACE_API shmtrace_name_t shmtrace_intern_n(const char* name, size_t length);

/* Spans. begin pushes the span on the calling thread's stack (its parent is
 * the current top, or the inherited context); end pops it. Ending a span that
 * is not the top also ends the spans opened above it (status ERR for those). */
SHMTRACE_API shmtrace_span_t shmtrace_span_begin(shmtrace_name_t name);
SHMTRACE_API shmtrace_span_t shmtrace_span_begin_group(shmtrace_name_t group,
                                                       shmtrace_name_t name);
SHMTRACE_API void shmtrace_span_end(shmtrace_span_t span);
SHMTRACE_API void shmtrace_span_end_status(shmtrace_span_t span, int status);

/* Ends a span that a C++ exception is leaving: status ERR, and an error
 * record for the exception (type, what(), throw-site frames; one record per
 * throw, however many spans it leaves; kept even in a sampled-out trace).
 * The C++ Scope calls it; an exception caught inside its span costs nothing. */
SHMTRACE_API void shmtrace_span_end_exception(shmtrace_span_t span);

/* Instant event in the current span; message may be NULL. */
SHMTRACE_API void shmtrace_event(shmtrace_name_t name, const char* message);
SHMTRACE_API void shmtrace_event_status(shmtrace_name_t name, int status, const char* message);

/* Counter sample. */
SHMTRACE_API void shmtrace_counter_i64(shmtrace_name_t name, int64_t value);
SHMTRACE_API void shmtrace_counter_f64(shmtrace_name_t name, double value);

/* Arguments (inputs) and results (outputs) of the current span. Values of
 * sensitive names (SHMTRACE_SENSITIVE) are written as "***"; strings and bytes
 * longer than SHMTRACE_MAX_REPR are truncated and flagged. */
SHMTRACE_API void shmtrace_arg_i64(shmtrace_name_t name, int64_t value);
SHMTRACE_API void shmtrace_arg_u64(shmtrace_name_t name, uint64_t value);
SHMTRACE_API void shmtrace_arg_f64(shmtrace_name_t name, double value);
SHMTRACE_API void shmtrace_arg_bool(shmtrace_name_t name, int value);
SHMTRACE_API void shmtrace_arg_str(shmtrace_name_t name, const char* value);
SHMTRACE_API void shmtrace_arg_strn(shmtrace_name_t name, const char* value, size_t length);
SHMTRACE_API void shmtrace_arg_bytes(shmtrace_name_t name, const void* data, size_t length);
SHMTRACE_API void shmtrace_arg_repr(shmtrace_name_t name, const char* repr, size_t length);
SHMTRACE_API void shmtrace_result_i64(shmtrace_name_t name, int64_t value);
SHMTRACE_API void shmtrace_result_u64(shmtrace_name_t name, uint64_t value);
SHMTRACE_API void shmtrace_result_f64(shmtrace_name_t name, double value);
SHMTRACE_API void shmtrace_result_bool(shmtrace_name_t name, int value);
SHMTRACE_API void shmtrace_result_strn(shmtrace_name_t name, const char* value, size_t length);
SHMTRACE_API void shmtrace_result_repr(shmtrace_name_t name, const char* repr, size_t length);

/* An error in the current span, written to the error area (never dropped,
 * kept even when the span is sampled out). type and message may be NULL;
 * message is cut at 500 bytes. Returns the error's sequence number, 0 if the
 * runtime is off. */
SHMTRACE_API uint64_t shmtrace_error(const char* type, const char* message);

/* Trace context as a W3C traceparent string. get writes the current span's
 * context (or the inherited one) into buf and returns 0; -1 if buf is too small
 * or there is no context. set makes the given context the parent of the next
 * root span on this thread; returns 0, or -1 for a malformed string. */
SHMTRACE_API int shmtrace_traceparent(char* buf, size_t size);
SHMTRACE_API int shmtrace_set_traceparent(const char* traceparent);

/* Name of this process's segment ("" when off), for tools and tests. */
SHMTRACE_API const char* shmtrace_segment_name(void);

/* The inline fast path. A disabled runtime, or a span inside a sampled-out
 * trace, must cost about a nanosecond, less than a call into the library, so
 * these two variables are part of the ABI and the helpers below test them in
 * the caller:
 *   shmtrace_may_record_       0 once the runtime is a no-op for good (disabled,
 *                              or no segment); 1 while it records or has not
 *                              started yet; 2 while it records and keeps
 *                              call-site statistics (SHMTRACE_STATS_SITES >
 *                              0): spans of a sampled-out trace are counted
 *                              and timed too, so they call in as well.
 *                              Written by the runtime only.
 *   shmtrace_unsampled_depth_  per thread: how deep the calling thread is in a
 *                              sampled-out trace (0: not in one). Belongs to
 *                              the calling thread; the helpers keep it.
 * The macros and the C++ API use these helpers; plain calls of
 * shmtrace_span_begin_group/shmtrace_span_end_status behave the same, only
 * slower when nothing is recorded. */
SHMTRACE_API extern int shmtrace_may_record_;
SHMTRACE_API extern __thread uint32_t shmtrace_unsampled_depth_
#if defined(__GNUC__)
    __attribute__((tls_model("initial-exec")))
#endif
    ;

#if defined(__GNUC__)
#define SHMTRACE_INLINE static inline __attribute__((always_inline, no_instrument_function))
#else
#define SHMTRACE_INLINE static inline
#endif

/* no_instrument_function: a program built with -finstrument-functions must
 * not turn these helpers into traced out-of-line calls. */
SHMTRACE_INLINE shmtrace_span_t shmtrace_span_enter(shmtrace_name_t group, shmtrace_name_t name) {
  const int may_record = __atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED);
  if (__builtin_expect(may_record == 0, 0)) return 0;
  if (__builtin_expect(shmtrace_unsampled_depth_ != 0 && may_record == 1, 0)) {
    ++shmtrace_unsampled_depth_;
    return 0;
  }
  return shmtrace_span_begin_group(group, name);
}

SHMTRACE_INLINE void shmtrace_span_leave(shmtrace_span_t span, int status) {
  const int may_record = __atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED);
  if (__builtin_expect(may_record == 0, 0)) return;
  if (__builtin_expect(shmtrace_unsampled_depth_ != 0 && may_record == 1, 0)) {
    --shmtrace_unsampled_depth_;
    return;
  }
  shmtrace_span_end_status(span, status);
}

#ifdef __cplusplus
}
#endif

/* Interns a string literal once per call site. */
#if defined(__GNUC__)
#define SHMTRACE_NAME(literal)                                     \
  __extension__({                                                  \
    static shmtrace_name_t shmtrace_name_cache_;                   \
    shmtrace_name_t shmtrace_id_ =                                 \
        __atomic_load_n(&shmtrace_name_cache_, __ATOMIC_ACQUIRE);  \
    if (__builtin_expect(shmtrace_id_ == 0, 0)) {                  \
      shmtrace_id_ = shmtrace_intern(literal);                     \
      __atomic_store_n(&shmtrace_name_cache_, shmtrace_id_,        \
                       __ATOMIC_RELEASE);                          \
    }                                                              \
    shmtrace_id_;                                                  \
  })
#endif

#endif /* SHMTRACE_SHMTRACE_H */
