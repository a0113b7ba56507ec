#include "exception_hook.hpp"

#include <dlfcn.h>
#include <execinfo.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <typeinfo>

#include "clock.hpp"

// From the Itanium C++ ABI (<cxxabi.h> would also declare __cxa_throw, which
// this file defines).
extern "C" char* __cxa_demangle(const char* mangled, char* buffer, std::size_t* length, int* status);

namespace shmtrace::runtime {

// What the thread threw last; one page per thread that throws, mapped on its
// first throw (TLS stays small for the initial-exec model).
struct ThrownException {
  const std::type_info* type = nullptr;
  std::uint64_t sequence = 0;  // error record written for it, 0 = not yet
  std::uint32_t what_length = 0;
  std::uint32_t frame_count = 0;
  std::uint64_t frames[abi::kMaxErrorFrames];
  char what[abi::kMaxErrorMessage];
};

namespace {

constinit thread_local ThrownException* tls_thrown __attribute__((tls_model("initial-exec"))) = nullptr;

ThrownException* thrown_slot() noexcept {
  if (tls_thrown == nullptr) {
    void* memory = ::mmap(nullptr, sizeof(ThrownException), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return nullptr;
    tls_thrown = new (memory) ThrownException();
  }
  return tls_thrown;
}

void remember(void* object, std::type_info* type) noexcept {
  Runtime* rt = __atomic_load_n(&g_runtime, __ATOMIC_ACQUIRE);
  if (rt == nullptr) return;
  ThrownException* slot = thrown_slot();
  if (slot == nullptr) return;
  slot->type = type;
  slot->sequence = 0;
  slot->what_length = 0;
  // std::exception's what(), if the thrown type derives from it: the same
  // test the personality routine makes for `catch (const std::exception&)`.
  void* adjusted = object;
  if (type != nullptr && typeid(std::exception).__do_catch(type, &adjusted, 1)) {
    const char* what = static_cast<const std::exception*>(adjusted)->what();
    if (what != nullptr) {
      slot->what_length = static_cast<std::uint32_t>(::strnlen(what, sizeof slot->what));
      std::memcpy(slot->what, what, slot->what_length);
    }
  }
  void* frames[abi::kMaxErrorFrames + 2];
  const int max = static_cast<int>(rt->config.max_frames) + 2;
  const int got = rt->config.max_frames == 0 ? 0 : ::backtrace(frames, max);
  slot->frame_count = 0;
  for (int i = 2; i < got; ++i) {  // skip remember() and __cxa_throw
    slot->frames[slot->frame_count++] = reinterpret_cast<std::uint64_t>(frames[i]);
  }
}

}  // namespace

std::uint64_t record_thrown_exception(ThreadState& t, Runtime& rt) noexcept {
  ThrownException* thrown = tls_thrown;
  if (thrown != nullptr && thrown->sequence != 0) return thrown->sequence;
  ErrorDraft d;
  describe_error(d, abi::ErrorKind::kException, t, rt);
  char* demangled = nullptr;
  if (thrown != nullptr && thrown->type != nullptr) {
    int status = 0;
    demangled = ::__cxa_demangle(thrown->type->name(), nullptr, nullptr, &status);
    d.type = demangled != nullptr ? demangled : thrown->type->name();
    d.message = std::string_view(thrown->what, thrown->what_length);
    d.frames = thrown->frames;
    d.frame_count = thrown->frame_count;
  } else {
    d.type = "unknown exception";  // thrown where we could not see it
  }
  const std::uint64_t sequence = rt.errors->append(d);
  std::free(demangled);
  if (thrown != nullptr) thrown->sequence = sequence;
  return sequence;
}

}  // namespace shmtrace::runtime

// Interposed: the program's throws come here first (the runtime is linked or
// preloaded ahead of libstdc++), then go on to the real __cxa_throw.
// GCC declares it internally with `void*` for the type_info.
extern "C" SHMTRACE_API [[noreturn]] void __cxa_throw(void* object, void* type, void (*destructor)(void*)) {
  using Throw = void (*)(void*, void*, void (*)(void*));
  static Throw real = reinterpret_cast<Throw>(::dlsym(RTLD_NEXT, "__cxa_throw"));
  shmtrace::runtime::remember(object, static_cast<std::type_info*>(type));
  real(object, type, destructor);
  __builtin_unreachable();
}
