// loom: an LLM inference server built around continuous batching.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "util/openmp_env.h"

int main(int argc, char** argv) {
  loom::ensure_openmp_wait_policy(argv);
  CLI::App app{"loom: LLM inference with continuous batching"};
  app.require_subcommand(1);
  loom::cli::add_info_command(app);
  loom::cli::add_generate_command(app);
  loom::cli::add_serve_command(app);
  loom::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return 0;
}
