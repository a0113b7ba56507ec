/* The workload's plain C layer: an exported function and a static one, so
 * the resolver is tested on unmangled names and on local symbols. */
#include "workload.h"

__attribute__((noinline)) static unsigned helper_mix(unsigned value, unsigned salt) {
  WORKLOAD_COUNT(helper_mix);
  value ^= salt + 0x9e3779b9u + (value << 6) + (value >> 2);
  return value;
}

__attribute__((noinline)) int helper_checksum(int order, long cents) {
  WORKLOAD_COUNT(helper_checksum);
  unsigned sum = helper_mix((unsigned)order, 17u);
  sum = helper_mix(sum, (unsigned)cents);
  return (int)(sum & 0x7fffffffu);
}
