// Chat templates for the families loom serves, chosen from the model's own Jinja template.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer_spec.h"
#include "util/result.h"

namespace loom {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

enum class ChatFormat { kChatML, kLlama3, kLlama2, kMistral };
const char* chat_format_name(ChatFormat format);
// "chatml", "llama3", "llama2", "mistral"
Result<ChatFormat> parse_chat_format(const std::string& name);

class ChatTemplate {
 public:
  // Recognises the family from the model's Jinja source; an unknown template is an error unless
  // `override_name` names a format.
  static Result<ChatTemplate> from_spec(const TokenizerSpec& spec,
                                        const std::string& override_name = "");
  // bos_text / eos_text: the texts the template writes for bos_token / eos_token ("" when the
  // model's template does not write them).
  explicit ChatTemplate(ChatFormat format, std::string default_system = "",
                        std::string bos_text = "", std::string eos_text = "")
      : format_(format),
        default_system_(std::move(default_system)),
        bos_text_(std::move(bos_text)),
        eos_text_(std::move(eos_text)) {}
  ChatFormat format() const { return format_; }
  const std::string& default_system() const { return default_system_; }
  // The prompt text (special tokens as text: encode it with parse_special = true). It holds BOS
  // where the model's template writes it, so encode it with add_special = false then.
  // Refuses an unknown role or a sequence the format cannot express with a clear message.
  Result<std::string> apply(const std::vector<ChatMessage>& messages,
                            bool add_generation_prompt = true) const;

 private:
  ChatFormat format_;
  std::string default_system_;  // e.g. SmolLM2's "You are a helpful AI assistant named SmolLM..."
  std::string bos_text_;
  std::string eos_text_;
};

}  // namespace loom
