// shmtrace/shmtrace.hpp: the C++ API, header-only over the C API (shmtrace.h).
//
//   #include <shmtrace/shmtrace.hpp>
//
//   namespace app::db {
//   std::optional<Row> Store::get(int key, const std::vector<int>& columns) {
//     SHMTRACE_FUNCTION();              // span "app::db::Store::get", group "app::db"
//     SHMTRACE_ARG("key", key);         // an integer value
//     SHMTRACE_ARG("columns", columns); // "std::vector<int>[size=7]{1, 2, 3, 4, 5, ...}"
//     return SHMTRACE_RESULT("row", lookup(key));
//   }                                   // ends OK, or ERR if an exception leaves it
//   }  // namespace app::db
//
//   void flush() {
//     SHMTRACE_SCOPE_NAMED(span, "storage", "flush");  // explicit group and name
//     if (!write_all()) span.fail();                  // ERR without an exception
//   }
//
// Spans: shmtrace::Scope begins a span when constructed and ends it when
// destroyed, with status ERR when an exception propagates through it and OK
// otherwise, unless set_status() or fail() decided. The macros intern their
// names once per call site, so the hot path costs two loads, a branch and
// the runtime's begin/end:
//   SHMTRACE_FUNCTION()             name = the enclosing function, group = its
//                                   namespace (parsed from __PRETTY_FUNCTION__
//                                   at compile time; see detail::
//                                   parse_function_signature for the rules)
//   SHMTRACE_FUNCTION_IN(group)     same name, explicit group
//   SHMTRACE_SPAN(name)             explicit name, group from the namespace
//   SHMTRACE_SCOPE(group, name)     both explicit (string literals)
//   *_NAMED(var, ...)               the same, with a Scope variable to use
// A group of "" (a function in no namespace) is sent as id 0, which the
// runtime replaces with the executable's name.
//
// Arguments and results: arg(name, value) and result(name, value) attach a
// value to the innermost open span of the calling thread (the C API has no
// span handle for them): integers, bool, floating point and strings as typed
// values, everything else as a summary (repr.hpp: containers as type, size
// and first elements; customization with shmtrace::Repr<T> or an ADL
// shmtrace_repr(const T&); else the type name). result() returns its value,
// so `return SHMTRACE_RESULT("sum", a + b);` works. Names given as text are
// interned on every call: prefer the macros (SHMTRACE_ARG, SHMTRACE_RESULT,
// SHMTRACE_EVENT), which intern once per call site, or ids from SHMTRACE_NAME.
//
// Sensitive values: nothing is masked here. The runtime flags a name as
// sensitive when it is interned (SHMTRACE_SENSITIVE: password, api_key,
// token, secret, ... by default) and writes "***" for every value recorded
// under it, whatever its type; text inside a summary of another name is left
// to the drain's redaction.
//
// Everything is noexcept, allocates nothing (except a user's shmtrace_repr),
// and is a cheap no-op when the runtime is disabled.
#ifndef SHMTRACE_SHMTRACE_HPP
#define SHMTRACE_SHMTRACE_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "shmtrace/repr.hpp"
#include "shmtrace/shmtrace.h"

#if !defined(__GNUC__)
#error "shmtrace.hpp needs GCC or Clang (__PRETTY_FUNCTION__, SHMTRACE_NAME)"
#endif

namespace shmtrace {

// A name for an argument, result, event or counter: an interned id, or text
// interned on the spot (once per call; keep ids in hot code).
class Name {
 public:
  SHMTRACE_NO_INSTRUMENT constexpr Name(shmtrace_name_t id) noexcept
      : id_(id) {}                                        // NOLINT(google-explicit-constructor)
  SHMTRACE_NO_INSTRUMENT Name(const char* text) noexcept  // NOLINT(google-explicit-constructor)
      : id_(text == nullptr ? 0 : shmtrace_intern(text)) {}
  SHMTRACE_NO_INSTRUMENT Name(
      std::string_view text) noexcept  // NOLINT(google-explicit-constructor)
      : id_(shmtrace_intern_n(text.data(), text.size())) {}

  [[nodiscard]] SHMTRACE_NO_INSTRUMENT constexpr shmtrace_name_t id() const noexcept { return id_; }

 private:
  shmtrace_name_t id_;
};

namespace detail {

enum class Direction { kArg, kResult };

// Interns text once into *cache (a static per call site); "" is id 0. Plain
// pointer and size rather than std::string_view, whose member functions
// -finstrument-functions would trace on every call.
SHMTRACE_NO_INSTRUMENT inline shmtrace_name_t intern_once(shmtrace_name_t* cache, const char* text,
                                                          std::size_t size) noexcept {
  // Acquire/release as SHMTRACE_NAME does: the id is the only data shared.
  shmtrace_name_t id = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
  if (__builtin_expect(id == 0 && size != 0, 0)) {
    id = shmtrace_intern_n(text, size);
    __atomic_store_n(cache, id, __ATOMIC_RELEASE);  // pairs with the load above
  }
  return id;
}

// The ids of one SHMTRACE_FUNCTION / SHMTRACE_SPAN call site; zero-initialized
// static storage, so no guard and no constructor.
struct CallSite {
  shmtrace_name_t group;
  shmtrace_name_t name;
};

// A call site's parsed signature as plain fields, built at compile time.
struct SiteText {
  constexpr explicit SiteText(FunctionSignature signature) noexcept
      : group(signature.group.data()),
        group_size(signature.group.size()),
        name(signature.name.data()),
        name_size(signature.name.size()) {}
  const char* group;
  std::size_t group_size;
  const char* name;
  std::size_t name_size;
};

template <Direction D>
SHMTRACE_NO_INSTRUMENT void emit_string(shmtrace_name_t name, std::string_view text) noexcept {
  if constexpr (D == Direction::kArg) {
    shmtrace_arg_strn(name, text.data(), text.size());
  } else {
    shmtrace_result_strn(name, text.data(), text.size());
  }
}

template <Direction D>
SHMTRACE_NO_INSTRUMENT void emit_repr(shmtrace_name_t name, const ReprWriter& out) noexcept {
  if constexpr (D == Direction::kArg) {
    shmtrace_arg_repr(name, out.data(), out.size());
  } else {
    shmtrace_result_repr(name, out.data(), out.size());
  }
}

template <Direction D, class T>
SHMTRACE_NO_INSTRUMENT void emit(shmtrace_name_t name, const T& value) noexcept {
  using U = std::remove_cv_t<T>;
  constexpr bool kArg = D == Direction::kArg;
  if constexpr (Customized<U>) {
    if (shmtrace_enabled() == 0) return;  // skip formatting when nothing records
    ReprWriter out;
    write_repr(out, value);
    emit_repr<D>(name, out);
  } else if constexpr (std::is_same_v<U, bool>) {
    kArg ? shmtrace_arg_bool(name, value ? 1 : 0) : shmtrace_result_bool(name, value ? 1 : 0);
  } else if constexpr (std::is_same_v<U, char>) {
    emit_string<D>(name, {&value, 1});
  } else if constexpr (std::is_integral_v<U> && std::is_signed_v<U>) {
    kArg ? shmtrace_arg_i64(name, static_cast<std::int64_t>(value))
         : shmtrace_result_i64(name, static_cast<std::int64_t>(value));
  } else if constexpr (std::is_integral_v<U>) {
    kArg ? shmtrace_arg_u64(name, static_cast<std::uint64_t>(value))
         : shmtrace_result_u64(name, static_cast<std::uint64_t>(value));
  } else if constexpr (std::is_floating_point_v<U>) {
    kArg ? shmtrace_arg_f64(name, static_cast<double>(value))
         : shmtrace_result_f64(name, static_cast<double>(value));
  } else if constexpr (CharPointer<U>) {
    emit_string<D>(name, value == nullptr ? std::string_view("nullptr") : std::string_view(value));
  } else if constexpr (CharArray<U>) {
    emit_string<D>(name, char_array_view(value));
  } else if constexpr (StringLike<U>) {
    emit_string<D>(name, std::string_view(value));
  } else if constexpr (kIsSpecialization<U, std::optional>) {
    if (value.has_value()) {
      emit<D>(name, *value);
    } else {
      emit_string<D>(name, "nullopt");
    }
  } else {
    if (shmtrace_enabled() == 0) return;
    ReprWriter out;
    write_repr(out, value);
    emit_repr<D>(name, out);
  }
}

}  // namespace detail

// Records value as an argument (input) of the current span.
template <class T>
SHMTRACE_NO_INSTRUMENT void arg(Name name, const T& value) noexcept {
  detail::emit<detail::Direction::kArg>(name.id(), value);
}

// Records value as a result (output) of the current span and hands it back:
// an lvalue as the same reference, an rvalue moved into the return value.
template <class T>
SHMTRACE_NO_INSTRUMENT T result(Name name,
                                T&& value) noexcept(std::is_nothrow_constructible_v<T, T&&>) {
  detail::emit<detail::Direction::kResult>(name.id(), std::as_const(value));
  return std::forward<T>(value);
}

// An instant event in the current span; message may be null.
SHMTRACE_NO_INSTRUMENT inline void event(Name name, const char* message = nullptr) noexcept {
  shmtrace_event(name.id(), message);
}

// A counter sample.
template <class T>
requires std::is_arithmetic_v<T> SHMTRACE_NO_INSTRUMENT void counter(Name name, T value) noexcept {
  if constexpr (std::is_floating_point_v<T>) {
    shmtrace_counter_f64(name.id(), static_cast<double>(value));
  } else {
    shmtrace_counter_i64(name.id(), static_cast<std::int64_t>(value));
  }
}

// An error in the current span, written to the error area (never dropped).
// Returns its sequence number, 0 when the runtime is off.
SHMTRACE_NO_INSTRUMENT inline std::uint64_t error(const char* type, const char* message) noexcept {
  return shmtrace_error(type, message);
}

// The current trace context as a W3C traceparent
// ("00-<trace>-<span>-<flags>"), to hand to another process.
struct Traceparent {
  char text[SHMTRACE_TRACEPARENT_SIZE] = {};
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT std::string_view view() const noexcept { return text; }
};

SHMTRACE_NO_INSTRUMENT inline std::optional<Traceparent> traceparent() noexcept {
  Traceparent context;
  if (shmtrace_traceparent(context.text, sizeof context.text) != 0) return std::nullopt;
  return context;
}

// An RAII span: begun by the constructor, ended by the destructor.
class Scope {
 public:
  // group 0 means the process's default group (the executable's name).
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT Scope(shmtrace_name_t group, shmtrace_name_t name) noexcept
      : span_(shmtrace_span_enter(group, name)), exceptions_(std::uncaught_exceptions()) {}
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT explicit Scope(shmtrace_name_t name) noexcept
      : Scope(0, name) {}

  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

  SHMTRACE_NO_INSTRUMENT ~Scope() {
    if (status_ == kStatusUnset && std::uncaught_exceptions() > exceptions_) {
      // More exceptions in flight than at construction: one is leaving us.
      // Recorded even in a sampled-out trace (errors are always kept).
      if (__atomic_load_n(&shmtrace_may_record_, __ATOMIC_RELAXED) != 0) shmtrace_span_end_exception(span_);
      return;
    }
    shmtrace_span_leave(span_, status_ == kStatusUnset ? SHMTRACE_OK : status_);
  }

  // Decides the status the span ends with (SHMTRACE_OK or SHMTRACE_ERR),
  // whether or not an exception leaves it.
  SHMTRACE_NO_INSTRUMENT void set_status(int status) noexcept {
    status_ = status == SHMTRACE_OK ? SHMTRACE_OK : SHMTRACE_ERR;
  }
  SHMTRACE_NO_INSTRUMENT void fail() noexcept { status_ = SHMTRACE_ERR; }

  // As the free functions: they attach to the innermost open span of the
  // thread, which is this one unless a nested span is open.
  template <class T>
  SHMTRACE_NO_INSTRUMENT void arg(Name name, const T& value) noexcept {
    shmtrace::arg(name, value);
  }
  template <class T>
  SHMTRACE_NO_INSTRUMENT T result(Name name,
                                  T&& value) noexcept(std::is_nothrow_constructible_v<T, T&&>) {
    return shmtrace::result(name, std::forward<T>(value));
  }
  SHMTRACE_NO_INSTRUMENT void event(Name name, const char* message = nullptr) noexcept {
    shmtrace::event(name, message);
  }

  // The span id, 0 when the span is not recorded (runtime off, sampled out).
  [[nodiscard]] SHMTRACE_NO_INSTRUMENT shmtrace_span_t id() const noexcept { return span_; }

 private:
  static constexpr int kStatusUnset = -1;

  shmtrace_span_t span_;
  int exceptions_;
  int status_ = kStatusUnset;
};

}  // namespace shmtrace

#define SHMTRACE_CAT_IMPL_(a, b) a##b
#define SHMTRACE_CAT_(a, b) SHMTRACE_CAT_IMPL_(a, b)
#define SHMTRACE_UNIQUE_(prefix) \
  SHMTRACE_CAT_(prefix, SHMTRACE_CAT_(__LINE__, SHMTRACE_CAT_(_, __COUNTER__)))

// A span with explicit group and name (string literals), ended at the end of
// the enclosing block; var names the Scope.
#define SHMTRACE_SCOPE_NAMED(var, group, name) \
  ::shmtrace::Scope var(SHMTRACE_NAME(group), SHMTRACE_NAME(name))
#define SHMTRACE_SCOPE(group, name) \
  SHMTRACE_SCOPE_NAMED(SHMTRACE_UNIQUE_(shmtrace_scope_), group, name)

// Per call site: the enclosing function's name and group, parsed at compile
// time, and their interned ids.
#define SHMTRACE_SITE_(var)                                                       \
  static constexpr ::shmtrace::detail::SiteText SHMTRACE_CAT_(var, _text_)(      \
      ::shmtrace::detail::parse_function_signature(__PRETTY_FUNCTION__));        \
  static constinit ::shmtrace::detail::CallSite SHMTRACE_CAT_(var, _site_) = {}
#define SHMTRACE_SITE_GROUP_(var)                                    \
  ::shmtrace::detail::intern_once(&SHMTRACE_CAT_(var, _site_).group, \
                                  SHMTRACE_CAT_(var, _text_).group,  \
                                  SHMTRACE_CAT_(var, _text_).group_size)
#define SHMTRACE_SITE_NAME_(var)                                    \
  ::shmtrace::detail::intern_once(&SHMTRACE_CAT_(var, _site_).name, \
                                  SHMTRACE_CAT_(var, _text_).name,  \
                                  SHMTRACE_CAT_(var, _text_).name_size)

// A span named after the enclosing function, in the group of its namespace.
#define SHMTRACE_FUNCTION_NAMED(var) \
  SHMTRACE_SITE_(var);               \
  ::shmtrace::Scope var(SHMTRACE_SITE_GROUP_(var), SHMTRACE_SITE_NAME_(var))
#define SHMTRACE_FUNCTION() SHMTRACE_FUNCTION_NAMED(SHMTRACE_UNIQUE_(shmtrace_scope_))

// A span named after the enclosing function, in an explicit group (literal).
#define SHMTRACE_FUNCTION_IN_NAMED(var, group) \
  SHMTRACE_SITE_(var);                         \
  ::shmtrace::Scope var(SHMTRACE_NAME(group), SHMTRACE_SITE_NAME_(var))
#define SHMTRACE_FUNCTION_IN(group) \
  SHMTRACE_FUNCTION_IN_NAMED(SHMTRACE_UNIQUE_(shmtrace_scope_), group)

// A span with an explicit name (literal), in the group of the enclosing
// function's namespace.
#define SHMTRACE_SPAN_NAMED(var, name) \
  SHMTRACE_SITE_(var);                 \
  ::shmtrace::Scope var(SHMTRACE_SITE_GROUP_(var), SHMTRACE_NAME(name))
#define SHMTRACE_SPAN(name) SHMTRACE_SPAN_NAMED(SHMTRACE_UNIQUE_(shmtrace_scope_), name)

// Argument, result and event of the current span, the name (a literal)
// interned once per call site. SHMTRACE_RESULT is an expression with the
// value of its argument. The value may contain commas (std::pair<int, int>{}).
#define SHMTRACE_ARG(name, ...) ::shmtrace::arg(SHMTRACE_NAME(name), __VA_ARGS__)
#define SHMTRACE_RESULT(name, ...) ::shmtrace::result(SHMTRACE_NAME(name), __VA_ARGS__)
#define SHMTRACE_EVENT(name, message) ::shmtrace::event(SHMTRACE_NAME(name), message)

#endif  // SHMTRACE_SHMTRACE_HPP
