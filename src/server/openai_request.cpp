#include "server/openai_request.h"

#include <cmath>
#include <limits>

namespace loom {

namespace {

using nlohmann::json;

// Reads optional typed fields of one JSON object; the first problem wins and names the field.
// A field that is absent or null keeps its default.
class FieldReader {
 public:
  explicit FieldReader(const json& obj) : obj_(obj) {}
  bool failed() const { return error_.has_value(); }
  ApiError take_error() { return std::move(*error_); }
  void fail(std::string message, const std::string& param) {
    if (!error_) error_ = invalid_request(std::move(message), param);
  }

  const json* get(const char* name) const {
    auto it = obj_.find(name);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  bool read_bool(const char* name, bool* out) {
    const json* v = get(name);
    if (v == nullptr || failed()) return false;
    if (!v->is_boolean()) {
      fail(std::string(name) + " must be a boolean", name);
      return false;
    }
    *out = v->get<bool>();
    return true;
  }

  // Integers only (1.0 is refused like "1"): [lo, hi] inclusive.
  bool read_int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
    const json* v = get(name);
    if (v == nullptr || failed()) return false;
    bool in_range = false;
    int64_t value = 0;
    if (v->is_number_unsigned()) {
      uint64_t u = v->get<uint64_t>();
      in_range = u <= static_cast<uint64_t>(hi) && (lo <= 0 || u >= static_cast<uint64_t>(lo));
      value = static_cast<int64_t>(std::min<uint64_t>(u, std::numeric_limits<int64_t>::max()));
    } else if (v->is_number_integer()) {
      value = v->get<int64_t>();
      in_range = value >= lo && value <= hi;
    } else {
      fail(std::string(name) + " must be an integer", name);
      return false;
    }
    if (!in_range) {
      fail(std::string(name) + " must be an integer in [" + std::to_string(lo) + ", " +
               std::to_string(hi) + "], got " + v->dump(),
           name);
      return false;
    }
    *out = value;
    return true;
  }

  bool read_int32(const char* name, int64_t lo, int64_t hi, int32_t* out) {
    int64_t v = 0;
    if (!read_int(name, lo, hi, &v)) return false;
    *out = static_cast<int32_t>(v);
    return true;
  }

  // Numbers (integer or float), finite, in [lo, hi] (or (lo, hi] when lo_open).
  bool read_float(const char* name, double lo, double hi, bool lo_open, float* out) {
    const json* v = get(name);
    if (v == nullptr || failed()) return false;
    if (!v->is_number()) {
      fail(std::string(name) + " must be a number", name);
      return false;
    }
    double d = v->get<double>();
    bool ok = std::isfinite(d) && (lo_open ? d > lo : d >= lo) && d <= hi;
    if (!ok) {
      char buf[160];
      std::snprintf(buf, sizeof(buf), "%s must be a number in %s%g, %g], got %s", name,
                    lo_open ? "(" : "[", lo, hi, v->dump().c_str());
      fail(buf, name);
      return false;
    }
    *out = static_cast<float>(d);
    return true;
  }

  bool read_string(const char* name, std::string* out) {
    const json* v = get(name);
    if (v == nullptr || failed()) return false;
    if (!v->is_string()) {
      fail(std::string(name) + " must be a string", name);
      return false;
    }
    *out = v->get<std::string>();
    return true;
  }

 private:
  const json& obj_;
  std::optional<ApiError> error_;
};

bool is_token_id_list(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const auto& x : v)
    if (!x.is_number_integer()) return false;
  return true;
}

// prompt: string | [string, ...] | [int, ...] | [[int, ...], ...]
void read_prompts(FieldReader& r, const json& body, const ProtocolLimits& limits, ApiRequest* req) {
  const json* p = r.get("prompt");
  if (p == nullptr) return r.fail("prompt is required", "prompt");
  auto add_ids = [&](const json& ids) {
    PromptInput in;
    for (const auto& x : ids) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() >= limits.vocab_size) {
        return r.fail("prompt token ids must be integers in [0, " +
                          std::to_string(limits.vocab_size) + "), got " + x.dump(),
                      "prompt");
      }
      in.token_ids.push_back(static_cast<TokenId>(x.get<int64_t>()));
    }
    req->prompts.push_back(std::move(in));
  };
  if (p->is_string()) {
    req->prompts.push_back(PromptInput{p->get<std::string>(), {}});
  } else if (p->is_array()) {
    if (p->empty()) return r.fail("prompt must not be an empty list", "prompt");
    if ((*p)[0].is_number_integer()) {
      add_ids(*p);
    } else {
      for (const auto& item : *p) {
        if (item.is_string()) {
          req->prompts.push_back(PromptInput{item.get<std::string>(), {}});
        } else if (is_token_id_list(item)) {
          add_ids(item);
        } else {
          return r.fail(
              "prompt must be a string, a list of strings, a list of token ids or a list of "
              "token-id lists",
              "prompt");
        }
        if (r.failed()) return;
      }
    }
  } else {
    return r.fail(
        "prompt must be a string, a list of strings, a list of token ids or a list of token-id "
        "lists",
        "prompt");
  }
  if (r.failed()) return;
  if (static_cast<int32_t>(req->prompts.size()) > limits.max_prompts)
    return r.fail("at most " + std::to_string(limits.max_prompts) + " prompts per request",
                  "prompt");
  for (const auto& in : req->prompts) {
    if (in.text && in.text->empty()) return r.fail("prompt must not be empty", "prompt");
  }
}

// content: string | [{"type": "text", "text": "..."}, ...] | null (assistant turns)
void read_messages(FieldReader& r, const ProtocolLimits& limits, ApiRequest* req) {
  const json* m = r.get("messages");
  if (m == nullptr) return r.fail("messages is required", "messages");
  if (!m->is_array() || m->empty())
    return r.fail("messages must be a non-empty list of {role, content} objects", "messages");
  for (size_t i = 0; i < m->size(); ++i) {
    const json& msg = (*m)[i];
    std::string where = "messages[" + std::to_string(i) + "]";
    if (!msg.is_object()) return r.fail(where + " must be an object", "messages");
    auto role = msg.find("role");
    if (role == msg.end() || !role->is_string())
      return r.fail(where + ".role must be a string", "messages");
    ChatMessage out;
    out.role = role->get<std::string>();
    if (out.role == "developer") out.role = "system";  // OpenAI's newer name for system
    if (out.role != "system" && out.role != "user" && out.role != "assistant")
      return r.fail(where + ".role must be one of system, user, assistant; got '" + out.role + "'",
                    "messages");
    auto content = msg.find("content");
    if (content == msg.end() || content->is_null()) {
      if (out.role != "assistant") return r.fail(where + ".content is required", "messages");
    } else if (content->is_string()) {
      out.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const auto& part : *content) {
        auto type = part.is_object() ? part.find("type") : part.end();
        auto text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || text == part.end() || !text->is_string())
          return r.fail(where + ".content parts must be {\"type\": \"text\", \"text\": string}",
                        "messages");
        out.content += text->get<std::string>();
      }
    } else {
      return r.fail(where + ".content must be a string or a list of text parts", "messages");
    }
    req->messages.push_back(std::move(out));
  }
}

void read_stop(FieldReader& r, const ProtocolLimits& limits, SamplingParams* sampling) {
  const json* s = r.get("stop");
  if (s == nullptr) return;
  std::vector<std::string> stops;
  if (s->is_string()) {
    stops.push_back(s->get<std::string>());
  } else if (s->is_array()) {
    for (const auto& x : *s) {
      if (!x.is_string()) return r.fail("stop must be a string or a list of strings", "stop");
      stops.push_back(x.get<std::string>());
    }
  } else {
    return r.fail("stop must be a string or a list of strings", "stop");
  }
  if (static_cast<int32_t>(stops.size()) > limits.max_stop_strings)
    return r.fail("at most " + std::to_string(limits.max_stop_strings) + " stop strings", "stop");
  for (const auto& x : stops) {
    if (x.empty()) return r.fail("stop strings must not be empty", "stop");
    if (static_cast<int32_t>(x.size()) > limits.max_stop_string_bytes)
      return r.fail(
          "stop strings must be at most " + std::to_string(limits.max_stop_string_bytes) + " bytes",
          "stop");
  }
  sampling->stop = std::move(stops);
}

}  // namespace

ParseResult parse_api_request(ApiKind kind, const std::string& body, const ProtocolLimits& limits) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return invalid_request("The request body is not valid JSON (UTF-8).", "", "invalid_json");
  return parse_api_request(kind, parsed, limits);
}

ParseResult parse_api_request(ApiKind kind, const json& body, const ProtocolLimits& limits) {
  if (!body.is_object())
    return invalid_request("The request body must be a JSON object.", "", "invalid_json");
  ApiRequest req;
  req.kind = kind;
  FieldReader r(body);
  SamplingParams& sp = req.sampling;

  r.read_string("model", &req.model);
  if (kind == ApiKind::kCompletion) {
    read_prompts(r, body, limits, &req);
  } else {
    read_messages(r, limits, &req);
  }

  // max_tokens: completions default 16 (OpenAI); chat defaults to the rest of the context.
  sp.max_tokens = 16;
  const int64_t max_tokens_hi = limits.max_tokens_limit;
  if (kind == ApiKind::kChat &&
      r.read_int32("max_completion_tokens", 1, max_tokens_hi, &sp.max_tokens)) {
    req.max_tokens_given = true;
  } else if (r.read_int32("max_tokens", 1, max_tokens_hi, &sp.max_tokens)) {
    req.max_tokens_given = true;
  }
  r.read_float("temperature", 0.0, 2.0, false, &sp.temperature);
  r.read_float("top_p", 0.0, 1.0, true, &sp.top_p);
  r.read_int32("n", 1, limits.max_n, &req.n);
  if (const json* best_of = r.get("best_of"); best_of != nullptr && !r.failed()) {
    int32_t b = 0;
    if (r.read_int32("best_of", 1, limits.max_n, &b) && b != req.n)
      r.fail("best_of other than n is not supported", "best_of");
  }
  read_stop(r, limits, &sp);
  int64_t seed = 0;
  if (r.read_int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                 &seed))
    sp.seed = static_cast<uint64_t>(seed);
  // A bias map would change which tokens come out: refused rather than silently ignored.
  if (const json* bias = r.get("logit_bias");
      bias != nullptr && !bias->is_null() && !(bias->is_object() && bias->empty()))
    r.fail("logit_bias is not supported", "logit_bias");
  r.read_float("presence_penalty", -2.0, 2.0, false, &sp.presence_penalty);
  r.read_float("frequency_penalty", -2.0, 2.0, false, &sp.frequency_penalty);
  if (kind == ApiKind::kCompletion) {
    r.read_int32("logprobs", 0, limits.max_logprobs, &req.logprobs);
    bool echo = false;
    if (r.read_bool("echo", &echo) && echo) r.fail("echo is not supported", "echo");
    std::string suffix;
    if (r.read_string("suffix", &suffix) && !suffix.empty())
      r.fail("suffix is not supported", "suffix");
  } else {
    bool want = false;
    r.read_bool("logprobs", &want);
    int32_t top = 0;
    bool top_given = r.read_int32("top_logprobs", 0, limits.max_logprobs, &top);
    if (top_given && !want && !r.failed())
      r.fail("top_logprobs requires logprobs to be true", "top_logprobs");
    if (want) req.logprobs = top;
  }
  sp.logprobs = req.logprobs;
  r.read_string("user", &req.user);
  r.read_bool("stream", &req.stream);
  if (const json* so = r.get("stream_options"); so != nullptr && !r.failed()) {
    if (!so->is_object()) {
      r.fail("stream_options must be an object", "stream_options");
    } else if (!req.stream) {
      r.fail("stream_options is only allowed with stream: true", "stream_options");
    } else {
      FieldReader so_reader(*so);
      so_reader.read_bool("include_usage", &req.include_usage);
      if (so_reader.failed())
        r.fail("stream_options.include_usage must be a boolean", "stream_options");
    }
  }

  // loom's own extensions.
  r.read_int32("top_k", -1, limits.vocab_size, &sp.top_k);
  r.read_float("min_p", 0.0, 1.0, false, &sp.min_p);
  r.read_float("repetition_penalty", 0.0, 10.0, true, &sp.repetition_penalty);
  r.read_bool("ignore_eos", &sp.ignore_eos);
  r.read_int32("min_tokens", 0, max_tokens_hi, &sp.min_tokens);
  std::string tier_text;
  if (r.read_string("tier", &tier_text)) {
    auto tier = parse_tier(tier_text);
    if (!tier) {
      r.fail("tier must be one of interactive, standard, batch; got '" + tier_text + "'", "tier");
    } else {
      req.priority = tier_priority(*tier);
    }
  }
  r.read_int32("priority", -1000, 1000, &req.priority);  // an explicit priority wins over tier

  if (r.failed()) return r.take_error();
  if (req.max_tokens_given && sp.min_tokens > sp.max_tokens)
    return invalid_request("min_tokens must not exceed max_tokens", "min_tokens");
  return req;
}

}  // namespace loom
