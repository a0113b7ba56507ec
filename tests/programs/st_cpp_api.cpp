// A C++ program using the C++ API (shmtrace.hpp), for api_process_test:
// namespaced functions, smart argument capture, results, and exceptions that
// leave a span (ERR) or are caught inside it (OK).
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "shmtrace/shmtrace.hpp"

namespace app::db {

struct Key {
  int shard;
  int id;
};
std::string shmtrace_repr(const Key& k) { return "Key(" + std::to_string(k.shard) + "/" + std::to_string(k.id) + ")"; }

struct Opaque {
  int x = 1;
};

class Store {
 public:
  int get(int key, const std::vector<int>& columns) {
    SHMTRACE_FUNCTION();
    SHMTRACE_ARG("key", key);
    SHMTRACE_ARG("columns", columns);
    return SHMTRACE_RESULT("value", key * 2);
  }
  void put(const Key& key, const std::map<std::string, int>& fields, const Opaque& blob) {
    SHMTRACE_FUNCTION();
    SHMTRACE_ARG("key", key);
    SHMTRACE_ARG("fields", fields);
    SHMTRACE_ARG("blob", blob);
    SHMTRACE_ARG("password", std::string("hunter2"));
  }
  void fail() {
    SHMTRACE_FUNCTION();
    throw std::runtime_error("disk full");
  }
  int recover() {
    SHMTRACE_FUNCTION();
    try {
      fail();
    } catch (const std::exception&) {
      return -1;  // caught inside this span: it ends OK
    }
    return 0;
  }
};

}  // namespace app::db

int main() {
  app::db::Store store;
  store.get(21, {1, 2, 3, 4, 5, 6, 7});
  store.put({3, 9}, {{"a", 1}, {"b", 2}}, {});
  store.recover();
  try {
    SHMTRACE_SCOPE("app", "outer");
    store.fail();
  } catch (const std::exception&) {
  }
  return 0;
}
