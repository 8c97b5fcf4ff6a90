// Each binding file registers its exports here, so adding a module touches
// no central list.
#pragma once
#include <napi.h>

namespace clb {

using Registrar = void (*)(Napi::Env env, Napi::Object exports);

struct Register {
  explicit Register(Registrar r);
};

void register_all(Napi::Env env, Napi::Object exports);

}  // namespace clb
