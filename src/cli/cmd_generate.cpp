// `loom generate`: one prompt streamed to stdout, or a JSONL file of requests run through the
// engine with a progress bar.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/commands.h"
#include "cli/engine_options.h"
#include "cli/jsonl_runner.h"
#include "util/clock.h"

namespace loom::cli {
namespace {

struct GenerateOptions {
  EngineOptions engine;
  std::string prompt;
  bool chat = false;
  std::string input, output;
  SamplingParams sampling;
  std::vector<std::string> stop;
  std::optional<uint64_t> seed;
};

int generate_one(const GenerateOptions& o, LoadedEngine& le) {
  std::string text = o.prompt;
  bool parse_special = false;
  if (o.chat) {
    if (!le.chat_template)
      throw CLI::ValidationError("--chat",
                                 le.chat_template_error + " (name one with --chat-template)");
    auto applied = le.chat_template->apply({ChatMessage{"user", o.prompt}}, true);
    if (!applied.ok()) throw CLI::ValidationError("--chat", applied.error());
    text = applied.value();
    parse_special = true;
  }
  Request req;
  // A chat template writes BOS itself where the model wants one.
  req.prompt = le.tokenizer->encode(text, /*add_special=*/!o.chat, parse_special);
  req.sampling = o.sampling;
  req.sampling.stop = o.stop;
  req.sampling.seed = o.seed;
  le.engine->start();
  SubmitResult r = le.engine->submit(std::move(req));
  if (!r.ok()) {
    std::fprintf(stderr, "loom generate: %s\n", r.error.c_str());
    return 1;
  }
  while (true) {
    auto delta = r.stream->next(std::chrono::milliseconds(1000));
    if (!delta) continue;
    std::fwrite(delta->new_text.data(), 1, delta->new_text.size(), stdout);
    std::fflush(stdout);
    if (delta->finish) {
      std::fputc('\n', stdout);
      const RequestTimings& t = delta->timings;
      const double prefill_s = (t.first_token_us - t.first_scheduled_us) * 1e-6;
      const double decode_s = (t.finished_us - t.first_token_us) * 1e-6;
      const int32_t decoded = delta->num_output_tokens - 1;
      std::fprintf(stderr,
                   "[%s] prompt %d tokens, prefill %.1f ms (%.1f tok/s); generated %d tokens, "
                   "decode %.1f tok/s\n",
                   finish_reason_name(*delta->finish), delta->num_prompt_tokens, prefill_s * 1e3,
                   prefill_s > 0 ? delta->num_prompt_tokens / prefill_s : 0.0,
                   delta->num_output_tokens,
                   decode_s > 0 && decoded > 0 ? decoded / decode_s : 0.0);
      break;
    }
  }
  le.engine->shutdown(std::chrono::milliseconds(0));
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "generate text for a prompt or a JSONL file");
  o->engine.add_to(*cmd);
  cmd->add_option("--prompt", o->prompt, "prompt text");
  cmd->add_flag("--chat", o->chat, "wrap the prompt in the model's chat template");
  cmd->add_option("--input", o->input, "JSONL requests (id, prompt or messages, sampling fields)");
  cmd->add_option("--output", o->output, "JSONL results (with --input)");
  cmd->add_option("--max-tokens", o->sampling.max_tokens, "new tokens")->capture_default_str();
  o->sampling.max_tokens = 128;
  o->sampling.temperature = 0.0f;
  cmd->add_option("--temperature", o->sampling.temperature, "0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "0 = off");
  cmd->add_option("--top-p", o->sampling.top_p, "nucleus");
  cmd->add_option("--min-p", o->sampling.min_p, "min-p");
  cmd->add_option("--repetition-penalty", o->sampling.repetition_penalty, "1 = off");
  cmd->add_option("--presence-penalty", o->sampling.presence_penalty, "[-2, 2]");
  cmd->add_option("--frequency-penalty", o->sampling.frequency_penalty, "[-2, 2]");
  cmd->add_option("--seed", o->seed, "sampling seed");
  cmd->add_option("--stop", o->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", o->sampling.ignore_eos, "keep generating past EOS");
  cmd->callback([o, cmd] {
    if (o->prompt.empty() == o->input.empty())
      throw CLI::ValidationError("generate", "give exactly one of --prompt and --input");
    if (!o->input.empty() && o->output.empty())
      throw CLI::ValidationError("generate", "--input needs --output");
    if (Status s = o->sampling.validate(1 << 30); !s.ok())
      throw CLI::ValidationError("generate", s.error());
    auto le = load_engine(o->engine);
    if (!le.ok()) {
      std::fprintf(stderr, "loom generate: %s\n", le.error().c_str());
      throw CLI::RuntimeError(1);
    }
    int rc = o->input.empty() ? generate_one(*o, *le.value())
                              : run_jsonl(o->input, o->output, *le.value());
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace loom::cli
