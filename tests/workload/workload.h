/* st_workload's call counters, shared by its C and C++ sources.
 *
 * Every function of the workload that a worker can run is built with
 * -finstrument-functions and counts its own calls, so a test can compare
 * the spans the runtime recorded with what really ran. The counters are
 * plain globals bumped by a macro, never by a function: a counting helper
 * would itself be instrumented and traced.
 *
 * WORKLOAD_FUNCTIONS is the one list: the counter's id and the name the
 * drain resolves the function's address to, i.e. its symbol demangled as
 * `nm -C st_workload` prints it (check_names.sh holds the two together).
 */
#ifndef SHMTRACE_TESTS_WORKLOAD_WORKLOAD_H
#define SHMTRACE_TESTS_WORKLOAD_WORKLOAD_H

#define WORKLOAD_FUNCTIONS(X)                                                  \
  X(main, "main")                                                              \
  X(run_worker, "shop::api::run_worker(int, int, bool)")                       \
  X(handle_order, "shop::api::handle_order(int, double)")                      \
  X(tax_lambda, "shop::api::handle_order(int, double)::{lambda(double)#1}::operator()(double) const") \
  X(close_books, "shop::api::close_books(int)")                                \
  X(quote, "shop::pricing::quote(int, double)")                                \
  X(discount, "shop::pricing::discount(int, double)")                          \
  X(validate, "shop::pricing::validate(int, double)")                          \
  X(round_cents, "shop::pricing::round_cents(double)")                         \
  X(clamp_int, "int shop::util::clamp<int>(int, int, int)")                    \
  X(clamp_double, "double shop::util::clamp<double>(double, double, double)")  \
  X(load, "shop::storage::load(int)")                                          \
  X(save, "shop::storage::save(int, long)")                                    \
  X(flush, "shop::storage::flush(int)")                                        \
  X(ledger_record, "shop::storage::Ledger::record(int, long)")                 \
  X(write_index, "shop::storage::write_index(int*, int)")                      \
  X(helper_checksum, "helper_checksum")                                        \
  X(helper_mix, "helper_mix")

enum workload_function {
#define WORKLOAD_ENUM_(id, name) workload_fn_##id,
  WORKLOAD_FUNCTIONS(WORKLOAD_ENUM_)
#undef WORKLOAD_ENUM_
  workload_function_count
};

/* The workload never calls the counters from more than one thread. */
#define WORKLOAD_COUNT(id) (++workload_calls[workload_fn_##id])

#ifdef __cplusplus
extern "C" {
#endif

extern unsigned long workload_calls[workload_function_count];

/* helpers.c: plain C, one static and one exported function. */
int helper_checksum(int order, long cents);

#ifdef __cplusplus
}
#endif

#endif /* SHMTRACE_TESTS_WORKLOAD_WORKLOAD_H */
