// Invariant checks that abort loudly with file and line. A broken internal invariant means the
// engine state is corrupt; limping on would hand wrong tokens to users, so we stop instead.
// Bad *input* is never checked with these: it is reported as an error value (util/result.h).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace loom::detail {
[[noreturn]] void check_failed(const char* file, int line, const char* cond, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
[[noreturn]] void check_failed(const char* file, int line, const char* cond);
}  // namespace loom::detail

// LOOM_CHECK(cond) or LOOM_CHECK(cond, "printf format", args...)
#define LOOM_CHECK(cond, ...)                                                             \
  do {                                                                                    \
    if (__builtin_expect(!(cond), 0)) {                                                   \
      ::loom::detail::check_failed(__FILE__, __LINE__, #cond __VA_OPT__(, ) __VA_ARGS__); \
    }                                                                                     \
  } while (0)

#ifdef NDEBUG
#define LOOM_DCHECK(cond, ...) \
  do {                         \
  } while (0)
#else
#define LOOM_DCHECK(cond, ...) LOOM_CHECK(cond __VA_OPT__(, ) __VA_ARGS__)
#endif
