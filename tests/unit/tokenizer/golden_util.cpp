#include "golden_util.h"

#include "model/gguf_file.h"

namespace loom::test {

Result<TokenizerSpec> gguf_tokenizer_spec(const std::string& path) {
  auto file_or = GgufFile::open(path);
  if (!file_or) return Error{file_or.error()};
  const GgufFile& f = **file_or;
  TokenizerSpec spec;
  auto model = f.get_string("tokenizer.ggml.model");
  if (!model) return Error{model.error()};
  spec.kind = *model == "llama" ? TokenizerKind::kSentencePiece : TokenizerKind::kByteLevelBpe;
  if (auto pre = f.get_string("tokenizer.ggml.pre")) spec.pre = *pre;
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return Error{tokens.error()};
  for (auto t : *tokens) spec.tokens.emplace_back(t);
  if (auto types = f.get_int_array("tokenizer.ggml.token_type")) {
    for (int64_t t : *types) spec.token_types.push_back(static_cast<TokenType>(t));
  }
  if (auto merges = f.get_string_array("tokenizer.ggml.merges")) {
    for (auto m : *merges) spec.merges.emplace_back(m);
  }
  if (auto scores = f.get_float_array("tokenizer.ggml.scores")) spec.scores = *scores;
  auto id = [&](const char* key) -> std::optional<TokenId> {
    auto v = f.get_int(key);
    if (!v) return std::nullopt;
    return static_cast<TokenId>(*v);
  };
  spec.bos_id = id("tokenizer.ggml.bos_token_id");
  spec.eos_id = id("tokenizer.ggml.eos_token_id");
  spec.unk_id = id("tokenizer.ggml.unknown_token_id");
  spec.pad_id = id("tokenizer.ggml.padding_token_id");
  if (auto v = f.get_bool("tokenizer.ggml.add_bos_token")) spec.add_bos = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_eos_token")) spec.add_eos = *v;
  if (auto v = f.get_bool("tokenizer.ggml.add_space_prefix")) spec.add_space_prefix = *v;
  if (auto v = f.get_string("tokenizer.chat_template")) spec.chat_template = *v;
  return spec;
}

TokenizerSpec spm_fixture_spec() {
  const auto model = load_golden("spm_model.json");
  TokenizerSpec spec;
  spec.kind = TokenizerKind::kSentencePiece;
  spec.tokens = model["tokens"].get<std::vector<std::string>>();
  spec.scores = model["scores"].get<std::vector<float>>();
  for (int t : model["types"].get<std::vector<int>>()) {
    spec.token_types.push_back(static_cast<TokenType>(t));
  }
  spec.bos_id = model["bos_id"].get<TokenId>();
  spec.eos_id = model["eos_id"].get<TokenId>();
  spec.unk_id = model["unk_id"].get<TokenId>();
  spec.add_bos = true;
  spec.add_space_prefix = model["add_space_prefix"].get<bool>();
  return spec;
}

}  // namespace loom::test
