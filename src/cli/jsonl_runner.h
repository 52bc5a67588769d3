// `loom generate --input prompts.jsonl --output results.jsonl`: every line through the engine.
#pragma once

#include <string>

#include "cli/engine_options.h"

namespace loom::cli {

// Input lines: {"id", "prompt" | "messages", and the API's sampling fields}. Output lines, in
// input order: {"id", "text", "finish_reason", "prompt_tokens", "completion_tokens",
// "cached_prompt_tokens", "timings": {"queue_ms", "ttft_ms", "decode_ms", "e2e_ms"}} or
// {"id", "error"} for a line that was refused. Returns the process exit code.
int run_jsonl(const std::string& input_path, const std::string& output_path, LoadedEngine& le);

}  // namespace loom::cli
