#include "tokenizer/chat_template.h"

#include <string_view>

namespace loom {

namespace {

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Jinja's `trim` (Python str.strip) for ASCII whitespace.
std::string trim(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return std::string(s.substr(b, e - b + 1));
}

// The default system prompt a ChatML template writes when the first message is not a system one,
// e.g. SmolLM2's '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, ...<|im_end|>'.
// The newline after "system" is a raw newline or a "\n" escape inside the Jinja string literal.
std::string chatml_default_system(std::string_view source) {
  for (std::string_view head :
       {std::string_view("<|im_start|>system\n"), std::string_view("<|im_start|>system\\n")}) {
    const size_t start = source.find(head);
    if (start == std::string_view::npos) continue;
    const size_t body = start + head.size();
    const size_t end = source.find("<|im_end|>", body);
    if (end == std::string_view::npos) continue;
    std::string_view literal = source.substr(body, end - body);
    // A Jinja expression in between means the text is not a constant.
    if (contains(literal, "{{") || contains(literal, "{%") || contains(literal, "' +") ||
        contains(literal, "+ '")) {
      continue;
    }
    std::string text;
    for (size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 1 < literal.size()) {
        const char c = literal[++i];
        text += c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
      } else {
        text += literal[i];
      }
    }
    return text;
  }
  return "";
}

std::string token_text(const TokenizerSpec& spec, const std::optional<TokenId>& id) {
  if (!id || *id < 0 || static_cast<size_t>(*id) >= spec.tokens.size()) return "";
  return spec.tokens[*id];
}

Status check_roles(const std::vector<ChatMessage>& messages) {
  for (const auto& m : messages) {
    if (m.role != "system" && m.role != "user" && m.role != "assistant") {
      return make_error("unknown chat role '%s' (expected system, user or assistant)",
                        m.role.c_str());
    }
  }
  return ok_status();
}

// [INST] formats: an optional leading system message, then user/assistant strictly alternating.
Status check_alternating(const std::vector<ChatMessage>& messages, size_t first) {
  for (size_t i = first; i < messages.size(); ++i) {
    const bool want_user = (i - first) % 2 == 0;
    if ((messages[i].role == "user") != want_user || messages[i].role == "system") {
      return make_error(
          "this chat format needs user/assistant turns alternating after an optional first "
          "system message; message %zu is '%s'",
          i, messages[i].role.c_str());
    }
  }
  return ok_status();
}

}  // namespace

const char* chat_format_name(ChatFormat format) {
  switch (format) {
    case ChatFormat::kChatML:
      return "chatml";
    case ChatFormat::kLlama3:
      return "llama3";
    case ChatFormat::kLlama2:
      return "llama2";
    case ChatFormat::kMistral:
      return "mistral";
  }
  return "unknown";
}

Result<ChatFormat> parse_chat_format(const std::string& name) {
  for (ChatFormat f :
       {ChatFormat::kChatML, ChatFormat::kLlama3, ChatFormat::kLlama2, ChatFormat::kMistral}) {
    if (name == chat_format_name(f)) return f;
  }
  return make_error("unknown chat format '%s' (known: chatml, llama3, llama2, mistral)",
                    name.c_str());
}

Result<ChatTemplate> ChatTemplate::from_spec(const TokenizerSpec& spec,
                                             const std::string& override_name) {
  const std::string& source = spec.chat_template;
  const bool writes_bos = contains(source, "bos_token");
  const bool writes_eos = contains(source, "eos_token");
  const std::string bos = writes_bos ? token_text(spec, spec.bos_id) : "";
  const std::string eos = writes_eos ? token_text(spec, spec.eos_id) : "";
  if (!override_name.empty()) {
    auto format = parse_chat_format(override_name);
    if (!format) return Error{format.error()};
    // An override keeps what the model's template says where it is of the same family.
    std::string system = *format == ChatFormat::kChatML ? chatml_default_system(source) : "";
    return ChatTemplate(*format, std::move(system), bos, eos);
  }
  if (source.empty()) {
    return make_error(
        "the model has no chat template; name a chat format (chatml, llama3, "
        "llama2, mistral)");
  }
  if (contains(source, "<|im_start|>")) {
    return ChatTemplate(ChatFormat::kChatML, chatml_default_system(source), bos, eos);
  }
  if (contains(source, "<|start_header_id|>")) {
    return ChatTemplate(ChatFormat::kLlama3, "", bos, eos);
  }
  if (contains(source, "[INST]")) {
    const ChatFormat f = contains(source, "<<SYS>>") ? ChatFormat::kLlama2 : ChatFormat::kMistral;
    return ChatTemplate(f, "", bos, eos);
  }
  return make_error(
      "unrecognised chat template (not ChatML, Llama 3, Llama 2 or Mistral); "
      "name a chat format to use instead");
}

Result<std::string> ChatTemplate::apply(const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt) const {
  if (auto s = check_roles(messages); !s) return Error{s.error()};
  std::string out;
  switch (format_) {
    case ChatFormat::kChatML: {
      if (!messages.empty() && messages[0].role != "system" && !default_system_.empty()) {
        out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
      }
      for (const auto& m : messages) {
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      }
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    }
    case ChatFormat::kLlama3: {
      out += bos_text_;
      for (const auto& m : messages) {
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) +
               "<|eot_id|>";
      }
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    }
    case ChatFormat::kLlama2:
    case ChatFormat::kMistral: {
      if (messages.empty()) return make_error("this chat format needs at least one message");
      const bool has_system = messages[0].role == "system";
      const size_t first = has_system ? 1 : 0;
      if (auto s = check_alternating(messages, first); !s) return Error{s.error()};
      if (format_ == ChatFormat::kMistral) out += bos_text_;
      for (size_t i = first; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        const bool first_turn = i == first;
        if (format_ == ChatFormat::kLlama2) {
          std::string text = m.content;
          if (first_turn && has_system) {
            text = "<<SYS>>\n" + messages[0].content + "\n<</SYS>>\n\n" + m.content;
          }
          if (m.role == "user") {
            out += bos_text_ + "[INST] " + trim(text) + " [/INST]";
          } else {
            out += " " + trim(text) + " " + eos_text_;
          }
        } else if (m.role == "user") {
          std::string text = m.content;
          if (first_turn && has_system) text = messages[0].content + "\n\n" + m.content;
          out += "[INST] " + text + " [/INST]";
        } else {
          out += m.content + eos_text_;
        }
      }
      return out;  // the prompt already ends where the assistant speaks ([/INST])
    }
  }
  return make_error("unknown chat format");
}

}  // namespace loom
