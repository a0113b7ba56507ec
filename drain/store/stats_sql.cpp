#include "store/stats_sql.hpp"

// Built twice: into the drain library against the SQLite library, and as a
// loadable extension (SHMTRACE_SQLITE_EXTENSION) whose SQLite calls go
// through the host's routine table.
#ifdef SHMTRACE_SQLITE_EXTENSION
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1
#else
#include <sqlite3.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "store/histogram_blob.hpp"

namespace shmtrace::drain {
namespace {

// One group's buckets merged by their nanosecond range: rows of the same
// clock add up bucket by bucket; rows of another clock keep their own ranges.
struct QuantileState {
  std::map<std::pair<double, double>, std::uint64_t> counts;
  double q = -1;
};

bool histogram_arg(sqlite3_context* ctx, sqlite3_value* value, const char* function, histogram::Histogram& out) {
  const void* data = sqlite3_value_blob(value);
  const int size = sqlite3_value_bytes(value);
  auto decoded = histogram::decode(data, static_cast<std::size_t>(size));
  if (!decoded) {
    const std::string message = std::string(function) + ": not a shmtrace histogram (" + std::to_string(size) +
                                " bytes; expected the call_stats.histogram layout)";
    sqlite3_result_error(ctx, message.c_str(), -1);
    return false;
  }
  out = std::move(*decoded);
  return true;
}

void quantile_step(sqlite3_context* ctx, int, sqlite3_value** argv) {
  auto** slot = static_cast<QuantileState**>(sqlite3_aggregate_context(ctx, sizeof(QuantileState*)));
  if (slot == nullptr) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (*slot == nullptr) *slot = new QuantileState;
  QuantileState& state = **slot;
  const int q_type = sqlite3_value_numeric_type(argv[1]);
  const double q = sqlite3_value_double(argv[1]);
  if ((q_type != SQLITE_INTEGER && q_type != SQLITE_FLOAT) || !(q >= 0 && q <= 1)) {
    sqlite3_result_error(ctx, "shmtrace_quantile: q must be a number from 0 to 1", -1);
    return;
  }
  state.q = q;
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) return;
  histogram::Histogram h;
  if (!histogram_arg(ctx, argv[0], "shmtrace_quantile", h)) return;
  for (const histogram::Bucket& b : h.buckets) {
    state.counts[{histogram::lower_ns(h, b.index), histogram::upper_ns(h, b.index)}] += b.count;
  }
}

void quantile_final(sqlite3_context* ctx) {
  auto** slot = static_cast<QuantileState**>(sqlite3_aggregate_context(ctx, 0));
  QuantileState* state = slot != nullptr ? *slot : nullptr;
  std::uint64_t total = 0;
  if (state != nullptr) {
    for (const auto& [range, count] : state->counts) total += count;
  }
  if (total == 0) {
    sqlite3_result_null(ctx);
  } else {
    // The rank of the q-quantile among the calls, 1-based.
    const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(state->q * static_cast<double>(total))));
    std::uint64_t seen = 0;
    for (const auto& [range, count] : state->counts) {
      seen += count;
      if (seen < rank) continue;
      sqlite3_result_double(ctx, (range.first + range.second) / 2);
      break;
    }
  }
  delete state;
}

void count_function(sqlite3_context* ctx, int, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  histogram::Histogram h;
  if (!histogram_arg(ctx, argv[0], "shmtrace_histogram_count", h)) return;
  sqlite3_result_int64(ctx, static_cast<sqlite3_int64>(h.total()));
}

}  // namespace

int register_stats_functions(sqlite3* db) {
  const int flags = SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS;
  int rc = sqlite3_create_function_v2(db, "shmtrace_quantile", 2, flags, nullptr, nullptr, quantile_step,
                                      quantile_final, nullptr);
  if (rc != SQLITE_OK) return rc;
  return sqlite3_create_function_v2(db, "shmtrace_histogram_count", 1, flags, nullptr, count_function, nullptr,
                                    nullptr, nullptr);
}

}  // namespace shmtrace::drain

#ifdef SHMTRACE_SQLITE_EXTENSION
// The entry point SQLite derives from the file name libshmtrace_sqlite.so.
extern "C" __attribute__((visibility("default"))) int sqlite3_shmtracesqlite_init(sqlite3* db, char**,
                                                                                    const sqlite3_api_routines* api) {
  SQLITE_EXTENSION_INIT2(api);
  return shmtrace::drain::register_stats_functions(db);
}
#endif
