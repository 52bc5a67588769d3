// Chat templates against jinja2's renders of the same templates (tests/golden/tokenizer/
// chat_golden.json, tools/make_tokenizer_golden.py).
#include <gtest/gtest.h>

#include "golden_util.h"
#include "tokenizer/chat_template.h"

namespace loom {
namespace {

// A spec holding just what a chat template reads: the source and the BOS/EOS texts.
TokenizerSpec spec_for(const nlohmann::json& t) {
  TokenizerSpec spec;
  spec.tokens = {t["bos_token"].get<std::string>(), t["eos_token"].get<std::string>()};
  spec.bos_id = 0;
  spec.eos_id = 1;
  spec.chat_template = t["source"].get<std::string>();
  return spec;
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> out;
  for (const auto& m : j)
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  return out;
}

TEST(ChatTemplate, RendersLikeJinja) {
  const auto golden = test::load_golden("chat_golden.json");
  const auto& templates = golden["templates"];
  int checked = 0;
  for (const auto& c : golden["cases"]) {
    const std::string name = c["template"].get<std::string>();
    auto chat = ChatTemplate::from_spec(spec_for(templates[name]));
    ASSERT_TRUE(chat.ok()) << name << ": " << chat.error();
    auto text = chat->apply(messages_of(c["messages"]), c["add_generation_prompt"].get<bool>());
    const std::string where = name + "/" + c["conversation"].get<std::string>() +
                              (c["add_generation_prompt"].get<bool>() ? "/gen" : "");
    if (c["error"].get<bool>()) {
      EXPECT_FALSE(text.ok()) << where << " rendered: " << *text;
    } else {
      ASSERT_TRUE(text.ok()) << where << ": " << text.error();
      EXPECT_EQ(*text, c["expected"].get<std::string>()) << where;
    }
    ++checked;
  }
  EXPECT_GE(checked, 60);
}

TEST(ChatTemplate, RecognisesFamilies) {
  const auto templates = test::load_golden("chat_golden.json")["templates"];
  const std::pair<const char*, ChatFormat> expected[] = {
      {"smollm2", ChatFormat::kChatML},      {"chatml_qwen", ChatFormat::kChatML},
      {"chatml_plain", ChatFormat::kChatML}, {"llama3", ChatFormat::kLlama3},
      {"llama2", ChatFormat::kLlama2},       {"mistral", ChatFormat::kMistral}};
  for (const auto& [name, format] : expected) {
    auto chat = ChatTemplate::from_spec(spec_for(templates[name]));
    ASSERT_TRUE(chat.ok()) << name;
    EXPECT_EQ(chat->format(), format) << name;
  }
  // The default system prompt comes out of the template source, raw newline or "\n" escape.
  auto smol = ChatTemplate::from_spec(spec_for(templates["smollm2"]));
  EXPECT_EQ(smol->default_system(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  auto qwen = ChatTemplate::from_spec(spec_for(templates["chatml_qwen"]));
  EXPECT_EQ(qwen->default_system(), "You are a helpful assistant.");
  auto plain = ChatTemplate::from_spec(spec_for(templates["chatml_plain"]));
  EXPECT_EQ(plain->default_system(), "");
}

TEST(ChatTemplate, UnknownTemplateNeedsAnOverride) {
  TokenizerSpec spec;
  spec.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}";
  auto chat = ChatTemplate::from_spec(spec);
  ASSERT_FALSE(chat.ok());
  EXPECT_NE(chat.error().find("chat format"), std::string::npos) << chat.error();
  auto forced = ChatTemplate::from_spec(spec, "chatml");
  ASSERT_TRUE(forced.ok()) << forced.error();
  EXPECT_EQ(forced->format(), ChatFormat::kChatML);
  EXPECT_FALSE(ChatTemplate::from_spec(spec, "vicuna").ok());
  EXPECT_FALSE(ChatTemplate::from_spec(TokenizerSpec{}).ok());  // no template at all
}

TEST(ChatTemplate, RefusesUnknownRoles) {
  ChatTemplate chat(ChatFormat::kChatML);
  auto text = chat.apply({{"tool", "x"}});
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.error().find("tool"), std::string::npos);
}

TEST(ChatTemplate, FormatNames) {
  for (ChatFormat f :
       {ChatFormat::kChatML, ChatFormat::kLlama3, ChatFormat::kLlama2, ChatFormat::kMistral}) {
    auto parsed = parse_chat_format(chat_format_name(f));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, f);
  }
}

}  // namespace
}  // namespace loom
