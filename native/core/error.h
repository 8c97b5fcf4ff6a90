// Errors thrown by the core carry a message meant for the user: they name the
// argument or file, the expected and the actual value.
#pragma once
#include <stdexcept>
#include <string>

namespace cl {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Raised when a caller's cancel flag is set; bindings turn it into an AbortError.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("operation aborted") {}
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

inline void require(bool ok, const std::string& msg) {
  if (!ok) fail(msg);
}

}  // namespace cl
