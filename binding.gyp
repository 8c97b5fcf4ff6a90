{
  "targets": [{
    "target_name": "conceptlens",
    "sources": ["<!@(sed -n -e 's/^core //p' -e 's/^binding //p' native/sources.txt)"],
    "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")", "/usr/include/x86_64-linux-gnu/openblas-pthread"],
    "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fopenmp"],
    "libraries": ["-lfaiss", "-lopenblas", "-lsnappy", "-fopenmp"]
  }]
}
