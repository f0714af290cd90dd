// ASSERT: checks that only a programmer's mistake can fail. Always on, in every build,
// because a consensus bug that keeps running corrupts data; crashing is the safe outcome.
// Expected failures (a stale term, a full disk) are returned as values, never asserted.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace synod::detail {
[[noreturn]] inline void AssertFailed(const char* expr, const char* file, int line,
                                      const char* why) {
  std::fprintf(stderr, "%s:%d: assertion failed: %s (%s)\n", file, line, expr, why);
  std::abort();
}
}  // namespace synod::detail

// ASSERT(cond, "why it must hold")
#define SYNOD_ASSERT(cond, why)                                                 \
  do {                                                                          \
    if (!(cond)) ::synod::detail::AssertFailed(#cond, __FILE__, __LINE__, why); \
  } while (0)

// SYNOD_UNREACHABLE("why"): marks a path no valid input can take (e.g. after a switch
// over every enumerator); aborts if taken.
#define SYNOD_UNREACHABLE(why) ::synod::detail::AssertFailed("unreachable", __FILE__, __LINE__, why)
