#!/usr/bin/env bash
# Installs what conceptlens needs on a fresh Debian 12 machine with Node 20:
# the system libraries the native engine links (OpenBLAS, FAISS), the build
# tools, Chromium (the HTML report test), then the npm dependencies and the
# build (npm ci runs the install hook, cmake-js, then `prepare`, tsc).
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake g++ make libopenblas-dev libfaiss-dev libsnappy-dev libxxhash-dev chromium patchelf redis-server)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
# onnxruntime-node's install script would download its CUDA provider (offline here).
ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
