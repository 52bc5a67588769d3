// Result<T>: a value or a human-readable error. Used for everything that can fail because of
// input (files, requests, parameters); internal invariants use LOOM_CHECK instead.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "util/check.h"

namespace loom {

struct Error {
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & {
    LOOM_CHECK(ok(), "value() on error: %s", std::get<1>(v_).message.c_str());
    return std::get<0>(v_);
  }
  T&& value() && {
    LOOM_CHECK(ok(), "value() on error: %s", std::get<1>(v_).message.c_str());
    return std::get<0>(std::move(v_));
  }
  const T& value() const& {
    LOOM_CHECK(ok(), "value() on error: %s", std::get<1>(v_).message.c_str());
    return std::get<0>(v_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const std::string& error() const {
    LOOM_CHECK(!ok());
    return std::get<1>(v_).message;
  }

 private:
  std::variant<T, Error> v_;
};

// For functions that return nothing but may fail.
struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() {
  return Ok{};
}

// printf-style construction of an Error.
Error make_error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace loom
