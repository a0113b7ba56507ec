// The worker's work: a toy shop in three layers (api -> pricing/storage ->
// util and the C helpers), every function instrumented by
// -finstrument-functions and counting its own calls (workload.h). noinline
// keeps each call a real call at -O2, so the hooks fire once per counted call.
//
// Per order: handle_order -> quote (-> discount, recursive; validate, which
// throws on every 11th order, caught in quote; clamp<double>; round_cents),
// the tax lambda, load (-> clamp<int>, helper_checksum -> helper_mix x2) and
// save (-> helper_checksum, write_index, Ledger::record), which throws on
// every 7th call, caught in handle_order; every 100th order also flushes (a
// SHMTRACE_SCOPE span). At the end close_books throws an exception that
// leaves its SHMTRACE_SCOPE span and run_worker; the worker's main catches it.
// With crash, the index table is lost half-way and the next write_index
// writes through a null pointer: SIGSEGV.
#include "shop.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "shmtrace/shmtrace.hpp"
#include "workload.h"

#define WORKLOAD_NOINLINE __attribute__((noinline))

namespace shop::util {

template <class T>
WORKLOAD_NOINLINE T clamp(T value, T low, T high) {
  if constexpr (std::is_same_v<T, int>) {
    WORKLOAD_COUNT(clamp_int);
  } else {
    WORKLOAD_COUNT(clamp_double);
  }
  return value < low ? low : (high < value ? high : value);
}

}  // namespace shop::util

namespace shop::pricing {

WORKLOAD_NOINLINE double discount(int depth, double price) {
  WORKLOAD_COUNT(discount);
  if (depth <= 0) return price;
  return discount(depth - 1, price * 0.95);
}

WORKLOAD_NOINLINE void validate(int order, double price) {
  WORKLOAD_COUNT(validate);
  if (order % 11 == 10) {
    throw std::invalid_argument("order " + std::to_string(order) + ": price " + std::to_string(price) +
                                " below the floor");
  }
}

WORKLOAD_NOINLINE static double round_cents(double price) {
  WORKLOAD_COUNT(round_cents);
  return std::round(price * 100.0) / 100.0;
}

WORKLOAD_NOINLINE double quote(int order, double price) {
  WORKLOAD_COUNT(quote);
  double quoted = discount(order % 4, price);
  try {
    validate(order, quoted);
  } catch (const std::invalid_argument&) {
    quoted = price;  // below the floor: no discount
  }
  quoted = util::clamp<double>(quoted, 1.0, 500.0);
  return SHMTRACE_RESULT("quote", round_cents(quoted));
}

}  // namespace shop::pricing

namespace shop::storage {

namespace {
constexpr int kIndexSize = 64;
int index_storage[kIndexSize];
}  // namespace

// Not static: the compiler must not know it can become null.
int* index_table = index_storage;

// Plain fields, no accessors: an accessor would be one more instrumented
// function to count.
struct Ledger {
  WORKLOAD_NOINLINE void record(int order, long cents);
  long total = 0;
  int entries = 0;
};

WORKLOAD_NOINLINE void Ledger::record(int order, long cents) {
  WORKLOAD_COUNT(ledger_record);
  total += cents;
  entries += order >= 0 ? 1 : 0;
}

Ledger ledger;

WORKLOAD_NOINLINE void write_index(int* table, int order) {
  WORKLOAD_COUNT(write_index);
  table[order % kIndexSize] = order;  // table null in crash mode: SIGSEGV
}

WORKLOAD_NOINLINE int load(int order) {
  WORKLOAD_COUNT(load);
  SHMTRACE_ARG("order", order);
  const int shelf = util::clamp<int>(order % 37, 0, 31);
  return helper_checksum(order, shelf) % 100;
}

WORKLOAD_NOINLINE void save(int order, long cents) {
  WORKLOAD_COUNT(save);
  static int saves = 0;
  if (++saves % 7 == 0) throw std::runtime_error("storage busy on save " + std::to_string(saves));
  write_index(index_table, helper_checksum(order, cents) % kIndexSize);
  ledger.record(order, cents);
}

WORKLOAD_NOINLINE void flush(int order) {
  WORKLOAD_COUNT(flush);
  SHMTRACE_SCOPE("shop.storage", "flush");
  SHMTRACE_ARG("orders", order + 1);
  SHMTRACE_ARG("entries", ledger.entries);
}

}  // namespace shop::storage

namespace shop::api {

WORKLOAD_NOINLINE long handle_order(int order, double price) {
  WORKLOAD_COUNT(handle_order);
  SHMTRACE_ARG("order", order);
  SHMTRACE_ARG("price", price);
  auto tax = [order](double amount) WORKLOAD_NOINLINE -> double {
    WORKLOAD_COUNT(tax_lambda);
    return amount * (order % 2 == 0 ? 0.1 : 0.2);
  };
  const double quoted = pricing::quote(order, price);
  const int stock = storage::load(order);
  const long cents = std::lround((quoted + tax(quoted)) * 100.0) + stock;
  try {
    storage::save(order, cents);
  } catch (const std::runtime_error& e) {
    SHMTRACE_EVENT("save_failed", e.what());  // caught here: the order span ends OK
  }
  if (order % 100 == 99) storage::flush(order);
  return SHMTRACE_RESULT("cents", cents);
}

WORKLOAD_NOINLINE void close_books(int worker) {
  WORKLOAD_COUNT(close_books);
  SHMTRACE_SCOPE("shop", "close_books");
  SHMTRACE_ARG("worker", worker);
  throw std::logic_error("worker " + std::to_string(worker) + ": books do not balance (" +
                         std::to_string(storage::ledger.total) + " cents)");
}

WORKLOAD_NOINLINE void run_worker(int worker, int iterations, bool crash) {
  WORKLOAD_COUNT(run_worker);
  long total = 0;
  for (int order = 0; order < iterations; ++order) {
    if (crash && order == iterations / 2) storage::index_table = nullptr;  // lost: the next write faults
    total += handle_order(order, 10.0 + (order % 50) * 1.25 + worker);
  }
  SHMTRACE_ARG("total", total);
  close_books(worker);  // always throws
}

}  // namespace shop::api
