// Builds small but complete llama / qwen2 GGUF models for ModelFile tests.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "unit/model/gguf_writer.h"

namespace loom::testing {

// hidden 8, 2 heads of 4, 1 KV head, ffn 16, 2 layers, 8 tokens.
struct TinyShape {
  uint64_t hidden = 8, heads = 2, kv_heads = 1, head_dim = 4, ffn = 16, layers = 2, vocab = 8;
};

// Metadata and all decoder tensors (F32 zeros); `skip` names one tensor to leave out.
inline GgufWriter tiny_model_writer(const std::string& arch = "llama", bool tied = true,
                                    const std::string& skip = "", TinyShape s = {}) {
  GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", "tiny " + arch);
  w.add_u32(arch + ".context_length", 128);
  w.add_u32(arch + ".embedding_length", s.hidden);
  w.add_u32(arch + ".block_count", s.layers);
  w.add_u32(arch + ".feed_forward_length", s.ffn);
  w.add_u32(arch + ".attention.head_count", s.heads);
  w.add_u32(arch + ".attention.head_count_kv", s.kv_heads);
  w.add_f32(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.add_f32(arch + ".rope.freq_base", 500000.0f);
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "qwen2");
  w.add_string_array("tokenizer.ggml.tokens",
                     {"a", "b", "c", "ab", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "d"});
  w.add_array<int32_t>("tokenizer.ggml.token_type", 5, {1, 1, 1, 1, 3, 3, 3, 1});
  w.add_string_array("tokenizer.ggml.merges", {"a b"});
  w.add_u32("tokenizer.ggml.eos_token_id", 6);
  w.add_u32("tokenizer.ggml.bos_token_id", 6);
  w.add_string("tokenizer.chat_template", "{{ '<|im_start|>' }}");
  const uint64_t q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim;
  auto add = [&](const std::string& name, std::vector<uint64_t> ne) {
    if (name != skip) w.add_tensor(name, DType::kF32, std::move(ne));
  };
  add("token_embd.weight", {s.hidden, s.vocab});
  add("output_norm.weight", {s.hidden});
  if (!tied) add("output.weight", {s.hidden, s.vocab});
  for (uint64_t i = 0; i < s.layers; ++i) {
    std::string p = "blk." + std::to_string(i) + ".";
    add(p + "attn_norm.weight", {s.hidden});
    add(p + "attn_q.weight", {s.hidden, q});
    add(p + "attn_k.weight", {s.hidden, kv});
    add(p + "attn_v.weight", {s.hidden, kv});
    add(p + "attn_output.weight", {q, s.hidden});
    add(p + "ffn_norm.weight", {s.hidden});
    add(p + "ffn_gate.weight", {s.hidden, s.ffn});
    add(p + "ffn_up.weight", {s.hidden, s.ffn});
    add(p + "ffn_down.weight", {s.ffn, s.hidden});
    if (arch == "qwen2") {
      add(p + "attn_q.bias", {q});
      add(p + "attn_k.bias", {kv});
      add(p + "attn_v.bias", {kv});
    }
  }
  return w;
}

// Writes bytes to a per-process temporary file and removes it on destruction.
class TempFile {
 public:
  explicit TempFile(const std::vector<uint8_t>& bytes, const std::string& suffix = ".gguf") {
    static int counter = 0;
    path_ =
        (std::filesystem::temp_directory_path() /
         ("loom_model_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++) + suffix))
            .string();
    std::ofstream out(path_, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace loom::testing
