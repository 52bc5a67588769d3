#include "tokenizer/tokenizer_json.h"

#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

namespace loom {

namespace {

using json = nlohmann::json;

// The patterns HF tokenizer.json files carry for the pre-tokenizers we know by name.
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kSpmSpace = "\xE2\x96\x81";

Result<json> read_json(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("cannot open %s '%s'", what, path.c_str());
  std::stringstream buffer;
  buffer << in.rdbuf();
  json doc = json::parse(buffer.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return make_error("%s '%s' is not valid JSON", what, path.c_str());
  if (!doc.is_object()) return make_error("%s '%s' is not a JSON object", what, path.c_str());
  return doc;
}

// "type" of a JSON object, or "" when absent/not a string.
std::string type_of(const json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

bool flag(const json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Flattens a "Sequence" (pretokenizers / normalizers) into its parts; anything else is one part.
std::vector<json> parts_of(const json& j, const char* list_key) {
  if (j.is_null()) return {};
  if (type_of(j) == "Sequence" && j.contains(list_key) && j[list_key].is_array()) {
    std::vector<json> out;
    for (const auto& p : j[list_key]) {
      auto sub = parts_of(p, list_key);
      out.insert(out.end(), sub.begin(), sub.end());
    }
    return out;
  }
  return {j};
}

// Maps the pre_tokenizer of a byte-level BPE to a named pre-tokenizer or explicit regexes.
Status read_byte_level_pre(const json& pre_tokenizer, TokenizerSpec& spec) {
  const auto parts = parts_of(pre_tokenizer, "pretokenizers");
  std::vector<std::string> regexes;
  bool digits_first = false;
  bool byte_level_regex = false;
  for (const auto& p : parts) {
    const std::string type = type_of(p);
    if (type == "ByteLevel") {
      if (flag(p, "add_prefix_space", false)) {
        return make_error("tokenizer.json: ByteLevel with add_prefix_space is not supported");
      }
      byte_level_regex = flag(p, "use_regex", true);
    } else if (type == "Digits") {
      if (!regexes.empty() || byte_level_regex) {
        return make_error("tokenizer.json: Digits after another pre-tokenizer is not supported");
      }
      digits_first = true;
      regexes.push_back(flag(p, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
    } else if (type == "Split") {
      const json& pattern = p.value("pattern", json());
      if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string()) {
        return make_error("tokenizer.json: Split pre-tokenizer without a Regex pattern");
      }
      if (p.value("behavior", std::string()) != "Isolated" || flag(p, "invert", false)) {
        return make_error("tokenizer.json: only Split with behavior Isolated is supported");
      }
      regexes.push_back(pattern["Regex"].get<std::string>());
    } else {
      return make_error("tokenizer.json: pre-tokenizer type '%s' is not supported", type.c_str());
    }
  }
  const char* gpt2_names = "gpt2";
  if (byte_level_regex && regexes.empty()) {
    spec.pre = gpt2_names;
  } else if (byte_level_regex && digits_first && regexes.size() == 1 && regexes[0] == R"(\p{N})") {
    spec.pre = "smollm";
  } else if (!byte_level_regex && regexes.size() == 1 && regexes[0] == kLlama3Pattern) {
    spec.pre = "llama3";
  } else if (!byte_level_regex && regexes.size() == 1 && regexes[0] == kQwen2Pattern) {
    spec.pre = "qwen2";
  } else if (!regexes.empty() || byte_level_regex) {
    // Our own sequence: the Split patterns, then GPT-2's pattern when ByteLevel splits too.
    spec.pre = "custom";
    spec.pre_regexes = regexes;
    if (byte_level_regex) {
      spec.pre_regexes.push_back(
          R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
    }
  } else {
    return make_error("tokenizer.json: byte-level BPE without a splitting pre-tokenizer");
  }
  return ok_status();
}

// Token text of a config entry: a string, or an object with "content".
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return "";
}

}  // namespace

Result<TokenizerSpec> load_tokenizer_json(const std::string& tokenizer_json_path,
                                          const std::string& tokenizer_config_path) {
  auto doc_or = read_json(tokenizer_json_path, "tokenizer.json");
  if (!doc_or) return Error{doc_or.error()};
  const json& doc = *doc_or;
  const json& model = doc.value("model", json());
  const std::string model_type = type_of(model);
  if (model_type != "BPE") {
    return make_error("tokenizer.json: model type '%s' is not supported (only BPE)",
                      model_type.empty() ? "(none)" : model_type.c_str());
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return make_error("tokenizer.json: model.vocab is missing or not an object");
  }
  TokenizerSpec spec;
  const bool byte_fallback = flag(model, "byte_fallback", false);
  spec.ignore_merges = flag(model, "ignore_merges", false);

  // id -> text from the vocab and the added tokens; ids must be dense enough to index.
  std::unordered_map<int64_t, std::string> by_id;
  int64_t max_id = -1;
  auto add = [&](int64_t id, const std::string& text) -> Status {
    if (id < 0 || id >= (int64_t{1} << 24)) {
      return make_error("tokenizer.json: token '%s' has id %lld out of range", text.c_str(),
                        static_cast<long long>(id));
    }
    by_id[id] = text;
    max_id = std::max(max_id, id);
    return ok_status();
  };
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer()) return make_error("tokenizer.json: vocab id is not an integer");
    if (auto s = add(id.get<int64_t>(), text); !s) return Error{s.error()};
  }
  struct Added {
    int64_t id;
    bool special;
  };
  std::vector<Added> added;
  if (doc.contains("added_tokens") && doc["added_tokens"].is_array()) {
    for (const auto& t : doc["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string()) {
        return make_error("tokenizer.json: malformed entry in added_tokens");
      }
      const int64_t id = t["id"].get<int64_t>();
      if (auto s = add(id, t["content"].get<std::string>()); !s) return Error{s.error()};
      added.push_back({id, flag(t, "special", false)});
    }
  }
  if (max_id < 0) return make_error("tokenizer.json: empty vocabulary");
  spec.tokens.resize(max_id + 1);
  spec.token_types.assign(max_id + 1, TokenType::kNormal);
  for (int64_t id = 0; id <= max_id; ++id) {
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      spec.token_types[id] = TokenType::kUnused;  // a hole in the id space: never produced
    } else {
      spec.tokens[id] = it->second;
    }
  }
  for (const Added& a : added) {
    spec.token_types[a.id] = a.special ? TokenType::kControl : TokenType::kUserDefined;
  }

  // Merges: "left right" strings, or ["left", "right"] pairs (newer files).
  if (model.contains("merges") && model["merges"].is_array()) {
    spec.merges.reserve(model["merges"].size());
    for (const auto& m : model["merges"]) {
      if (m.is_string()) {
        spec.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      } else {
        return make_error("tokenizer.json: a merge is neither 'a b' nor [\"a\", \"b\"]");
      }
    }
  }

  std::unordered_map<std::string, TokenId> to_id;
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.token_types[i] != TokenType::kUnused) {
      to_id.emplace(spec.tokens[i], static_cast<TokenId>(i));
    }
  }
  auto lookup = [&](const std::string& text) -> std::optional<TokenId> {
    auto it = to_id.find(text);
    if (it == to_id.end()) return std::nullopt;
    return it->second;
  };
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    spec.unk_id = lookup(model["unk_token"].get<std::string>());
  }

  const json& pre_tokenizer = doc.value("pre_tokenizer", json());
  const json& decoder = doc.value("decoder", json());
  bool byte_level = false;
  for (const auto& p : parts_of(pre_tokenizer, "pretokenizers")) {
    byte_level = byte_level || type_of(p) == "ByteLevel";
  }
  byte_level = byte_level || type_of(decoder) == "ByteLevel";
  if (byte_level) {
    spec.kind = TokenizerKind::kByteLevelBpe;
    if (auto s = read_byte_level_pre(pre_tokenizer, spec); !s) return Error{s.error()};
  } else if (byte_fallback) {
    // SentencePiece converted to HF BPE (Llama 2, Mistral): spaces are "▁", the prefix space
    // comes from a Prepend normalizer or a Metaspace pre-tokenizer.
    spec.kind = TokenizerKind::kSentencePiece;
    for (const auto& n : parts_of(doc.value("normalizer", json()), "normalizers")) {
      if (type_of(n) == "Prepend" && n.value("prepend", std::string()) == kSpmSpace) {
        spec.add_space_prefix = true;
      }
    }
    for (const auto& p : parts_of(pre_tokenizer, "pretokenizers")) {
      if (type_of(p) == "Metaspace") {
        const std::string scheme = p.value("prepend_scheme", std::string("always"));
        spec.add_space_prefix = spec.add_space_prefix || flag(p, "add_prefix_space", false) ||
                                scheme == "always" || scheme == "first";
      }
    }
    // Scores from merge ranks: the merge listed first is the one applied first.
    spec.scores.assign(spec.tokens.size(), -std::numeric_limits<float>::max());
    for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
      const std::string& m = spec.merges[rank];
      const size_t sep = m.find(' ', 1);
      if (sep == std::string::npos) continue;
      if (auto id = lookup(m.substr(0, sep) + m.substr(sep + 1))) {
        float& score = spec.scores[*id];
        score = std::max(score, -static_cast<float>(rank));
      }
    }
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      const std::string& t = spec.tokens[i];
      if (spec.token_types[i] == TokenType::kNormal && t.size() == 6 && t.rfind("<0x", 0) == 0 &&
          t[5] == '>') {
        spec.token_types[i] = TokenType::kByte;
      }
    }
    if (spec.unk_id) spec.token_types[*spec.unk_id] = TokenType::kUnknown;
  } else {
    return make_error(
        "tokenizer.json: BPE that is neither byte-level nor byte-fallback is not supported");
  }

  // Common end-of-turn tokens also end generation.
  for (const char* name : {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>"}) {
    if (auto id = lookup(name); id && spec.token_types[*id] == TokenType::kControl) {
      spec.extra_eos_ids.push_back(*id);
    }
  }

  if (!tokenizer_config_path.empty()) {
    std::ifstream probe(tokenizer_config_path);
    if (probe.good()) {
      auto config_or = read_json(tokenizer_config_path, "tokenizer_config.json");
      if (!config_or) return Error{config_or.error()};
      const json& config = *config_or;
      for (auto [key, target] : {std::pair{"bos_token", &spec.bos_id},
                                 {"eos_token", &spec.eos_id},
                                 {"pad_token", &spec.pad_id},
                                 {"unk_token", &spec.unk_id}}) {
        if (!config.contains(key) || config[key].is_null()) continue;
        const std::string text = token_text(config[key]);
        auto id = lookup(text);
        if (!id) {
          return make_error("tokenizer_config.json: %s '%s' is not in the vocabulary", key,
                            text.c_str());
        }
        *target = *id;
      }
      spec.add_bos = flag(config, "add_bos_token", false) && spec.bos_id.has_value();
      spec.add_eos = flag(config, "add_eos_token", false) && spec.eos_id.has_value();
      if (config.contains("chat_template")) {
        const json& t = config["chat_template"];
        if (t.is_string()) {
          spec.chat_template = t.get<std::string>();
        } else if (t.is_array()) {  // named templates: take "default"
          for (const auto& entry : t) {
            if (entry.is_object() && entry.value("name", std::string()) == "default" &&
                entry.contains("template") && entry["template"].is_string()) {
              spec.chat_template = entry["template"].get<std::string>();
            }
          }
        }
      }
    }
  }
  return spec;
}

}  // namespace loom
