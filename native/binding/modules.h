// The addon's export families, one per binding file; addon.cpp calls each Init.
#pragma once
#include <napi.h>

namespace clb {

void InitTopK(Napi::Env env, Napi::Object exports);      // TopK, PreparedVocab (topk_binding.cpp)
void InitFp16(Napi::Env env, Napi::Object exports);      // halvesToFloats, floatsToHalves
void InitBlas(Napi::Env env, Napi::Object exports);      // matmulNT
void InitGlm(Napi::Env env, Napi::Object exports);       // glmFit, glmObjective
void InitFaiss(Napi::Env env, Napi::Object exports);     // FaissIndex
void InitFalcon(Napi::Env env, Napi::Object exports);    // falconFiring, falconCams
void InitSplice(Napi::Env env, Napi::Object exports);    // spliceDecompose, splicePath
void InitVocab(Napi::Env env, Napi::Object exports);     // transformRows, firstNonFiniteRow
void InitSae(Napi::Env env, Napi::Object exports);       // SaeTrainer, readSaeConfig

}  // namespace clb
