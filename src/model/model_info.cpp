#include "model/model_info.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <map>

namespace loom {
namespace {

void appendf(std::string* out, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void appendf(std::string* out, const char* fmt, ...) {
  char buf[512];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  *out += buf;
}

const char* rope_scaling_name(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::kNone:
      return "none";
    case RopeScaling::Type::kLinear:
      return "linear";
    case RopeScaling::Type::kLlama3:
      return "llama3";
  }
  return "?";
}

}  // namespace

std::string describe_model(const ModelFile& m, int32_t block_size, int32_t kv_bytes_per_value) {
  const ModelConfig& c = m.config();
  const TokenizerSpec& tok = m.tokenizer_spec();
  std::string s;
  appendf(&s, "architecture:      %s\n", arch_name(c.arch));
  appendf(&s, "name:              %s\n", c.name.empty() ? "(none)" : c.name.c_str());
  appendf(&s, "format:            %s\n", m.format().c_str());
  appendf(&s, "layers:            %d\n", c.num_layers);
  appendf(&s, "hidden size:       %d\n", c.hidden_size);
  appendf(&s, "ffn size:          %d\n", c.intermediate_size);
  appendf(&s, "heads:             %d (kv heads %d, head dim %d, q dim %d, kv dim %d)\n",
          c.num_heads, c.num_kv_heads, c.head_dim, c.q_dim(), c.kv_dim());
  appendf(&s, "vocab size:        %d\n", c.vocab_size);
  appendf(&s, "context length:    %d tokens\n", c.max_context);
  appendf(&s, "rms norm eps:      %g\n", c.rms_norm_eps);
  appendf(&s, "rope:              theta %g, %s, scaling %s", c.rope_theta,
          c.rope_style == RopeStyle::kInterleaved ? "interleaved" : "neox",
          rope_scaling_name(c.rope_scaling.type));
  if (c.rope_scaling.type != RopeScaling::Type::kNone) {
    appendf(&s, " (factor %g)", c.rope_scaling.factor);
  }
  s += "\n";
  appendf(&s, "embeddings:        %s\n",
          c.tied_embeddings ? "tied (output uses token_embd)" : "separate output matrix");
  appendf(&s, "qkv bias:          %s\n", c.qkv_bias ? "yes" : "no");

  std::map<std::string, int> type_counts;
  for (const TensorView& t : m.tensors()) ++type_counts[dtype_name(t.type)];
  appendf(&s, "tensors:           %zu (", m.tensors().size());
  bool first = true;
  for (const auto& [name, count] : type_counts) {
    appendf(&s, "%s%s x%d", first ? "" : ", ", name.c_str(), count);
    first = false;
  }
  s += ")\n";
  appendf(&s, "parameters:        %" PRId64 " (%.1f M)\n", m.num_parameters(),
          m.num_parameters() / 1e6);
  appendf(&s, "weight memory:     %.1f MiB\n", m.weight_bytes() / (1024.0 * 1024.0));
  const int64_t per_token = kv_bytes_per_token(c, kv_bytes_per_value);
  appendf(&s,
          "kv cache (16-bit): %" PRId64 " bytes per token, %" PRId64
          " bytes per block of %d tokens (%d bytes per value)\n",
          per_token, per_token * block_size, block_size, kv_bytes_per_value);
  appendf(&s, "tokenizer:         %s, pre '%s', %zu tokens, %zu merges\n",
          tok.kind == TokenizerKind::kByteLevelBpe ? "byte-level BPE" : "SentencePiece",
          tok.pre.c_str(), tok.tokens.size(), tok.merges.size());
  return s;
}

}  // namespace loom
