#include "check.h"

#include <cstdio>
#include <stdexcept>
#include <vector>

#include "../core/cpu.h"

namespace check {

namespace {
std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
struct Failed : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct Skipped : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace

int add(const char* name, std::function<void()> fn) {
  cases().push_back({name, std::move(fn)});
  return 0;
}

void failure(const char* file, int line, const std::string& what) {
  throw Failed(std::string(file) + ":" + std::to_string(line) + ": " + what);
}

void skip(const std::string& why) { throw Skipped(why); }

}  // namespace check

int main(int, char** argv) {
  cl::relaunch_with_preferred_blas(argv);
  int passed = 0, failed = 0, skipped = 0;
  for (auto& c : check::cases()) {
    try {
      c.fn();
      ++passed;
      std::printf("ok   %s\n", c.name);
    } catch (const check::Skipped& e) {
      ++skipped;
      std::printf("SKIP %s\n     %s\n", c.name, e.what());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s\n     %s\n", c.name, e.what());
    }
  }
  std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : skipped ? check::kSkipCode : 0;
}
