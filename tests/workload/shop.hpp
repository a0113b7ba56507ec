// The worker's entry into the toy shop (shop.cpp).
#ifndef SHMTRACE_TESTS_WORKLOAD_SHOP_HPP
#define SHMTRACE_TESTS_WORKLOAD_SHOP_HPP

namespace shop::api {

// Handles orders 0..iterations-1, then closes the books, which always throws
// std::logic_error out of a SHMTRACE_SCOPE span. With crash, dies of SIGSEGV
// half-way instead.
void run_worker(int worker, int iterations, bool crash);

}  // namespace shop::api

#endif  // SHMTRACE_TESTS_WORKLOAD_SHOP_HPP
