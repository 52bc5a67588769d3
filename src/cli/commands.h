// The `loom` subcommands; each registers its options and callback on the app.
#pragma once

#include <CLI/CLI.hpp>

namespace loom::cli {

void add_info_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_command(CLI::App& app);

}  // namespace loom::cli
