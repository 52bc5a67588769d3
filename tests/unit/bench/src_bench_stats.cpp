// src/cli/ is compiled into the `loom` executable only (no library to link against), so the
// `loom bench` code under test is compiled into this test program, one source per file.
#include "cli/bench_stats.cpp"
