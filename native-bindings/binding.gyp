{
  "targets": [
    {
      "target_name": "l2tpd_native",
      "sources": ["src/addon.cc", "src/setup.cc", "src/io.cc", "src/poll.cc", "src/offload.cc", "src/service.cc", "src/netlink.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++17", "-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
