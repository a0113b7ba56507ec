#include "workload.hpp"

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "shmtrace/shmtrace.h"

namespace shmtrace::demo {
namespace {

// Per request a "handle_request" span with a nested "parse" and "query"
// span; every 10th query fails with an error.
void worker_thread(int worker, int thread, int requests) {
  const shmtrace_name_t group = SHMTRACE_NAME("demo.server");
  const shmtrace_name_t handle = SHMTRACE_NAME("handle_request");
  const shmtrace_name_t parse = SHMTRACE_NAME("parse");
  const shmtrace_name_t query = SHMTRACE_NAME("query");
  const shmtrace_name_t request_id = SHMTRACE_NAME("request_id");
  const shmtrace_name_t password = SHMTRACE_NAME("password");
  const shmtrace_name_t rows = SHMTRACE_NAME("rows");
  const shmtrace_name_t queue = SHMTRACE_NAME("queue_depth");
  const std::string secret(kSecret);
  for (int i = 0; i < requests; ++i) {
    const shmtrace_span_t h = shmtrace_span_begin_group(group, handle);
    shmtrace_arg_i64(request_id, worker * 1000000 + thread * 10000 + i);
    shmtrace_arg_str(password, secret.c_str());
    const shmtrace_span_t p = shmtrace_span_begin(parse);
    volatile int spin = 0;
    for (int k = 0; k < 200; ++k) spin = spin + k;
    shmtrace_span_end(p);
    const shmtrace_span_t q = shmtrace_span_begin(query);
    if (i % 10 == 9) {
      char message[64];
      std::snprintf(message, sizeof message, "timeout on shard %d", i % 7);
      shmtrace_error("QueryTimeout", message);
      shmtrace_span_end_status(q, SHMTRACE_ERR);
    } else {
      shmtrace_result_i64(rows, i % 50);
      shmtrace_span_end(q);
    }
    shmtrace_counter_i64(queue, i % 17);
    shmtrace_span_end(h);
  }
}

}  // namespace

int run_worker(int worker, const Workload& w) {
  std::vector<std::thread> pool;
  for (int t = 0; t < w.threads; ++t) pool.emplace_back(worker_thread, worker, t, w.requests);
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace shmtrace::demo
