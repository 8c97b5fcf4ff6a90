#!/usr/bin/env bash
# C++ core tests (built with the addon by cmake-js). GPU tests carry the
# label `gpu` and run only where a GPU is present: `ctest --test-dir build -L gpu`.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build --parallel 2
ctest --test-dir build --output-on-failure -LE gpu
