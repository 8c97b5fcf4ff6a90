// Errors thrown by the core carry a message meant for the user: they name the
// argument or file, the expected and the actual value. Their code is the one
// the JS layer branches on (ERR_ARG, ERR_SHAPE, ...; see ts/errors.ts).
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

namespace cl {

enum class ErrorCode { Arg, Shape, Dtype, NaN, File, Device, Memory };

inline const char* error_code_name(ErrorCode c) {
  switch (c) {
    case ErrorCode::Shape: return "ERR_SHAPE";
    case ErrorCode::Dtype: return "ERR_DTYPE";
    case ErrorCode::NaN: return "ERR_NAN";
    case ErrorCode::File: return "ERR_FILE";
    case ErrorCode::Device: return "ERR_DEVICE";
    case ErrorCode::Memory: return "ERR_MEMORY";
    default: return "ERR_ARG";
  }
}

struct Error : std::runtime_error {
  ErrorCode code = ErrorCode::Arg;
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
  Error(ErrorCode c, const std::string& msg) : std::runtime_error(msg), code(c) {}
};

// Raised when a caller's cancel flag is set; bindings turn it into an AbortError.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("operation aborted") {}
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }
[[noreturn]] inline void fail(ErrorCode code, const std::string& msg) { throw Error(code, msg); }

// A value as a message shows it: shortest of fixed and exponent notation.
inline std::string show(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

inline void require(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}
inline void require(bool ok, ErrorCode code, const std::string& msg) {
  if (!ok) fail(code, msg);
}

}  // namespace cl
