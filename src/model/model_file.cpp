#include "model/model_file.h"

#include <sys/stat.h>

#include "model/model_loaders.h"

namespace loom {

Result<std::unique_ptr<ModelFile>> ModelFile::open(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return make_error("model path '%s' does not exist", path.c_str());
  }
  Result<Parts> parts = Error{};
  if (S_ISDIR(st.st_mode)) {
    parts = load_hf_parts(path);
  } else if (path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0) {
    return make_error(
        "'%s' is a safetensors file: pass its directory (with config.json and "
        "tokenizer.json) instead",
        path.c_str());
  } else {
    auto gguf = GgufFile::open(path);
    if (!gguf) return Error{gguf.error()};
    parts = load_gguf_parts(**gguf);
  }
  if (!parts) return Error{parts.error()};
  return from_parts(std::move(parts).value());
}

Result<std::unique_ptr<ModelFile>> ModelFile::from_parts(Parts parts) {
  std::unique_ptr<ModelFile> m(new ModelFile());
  m->config_ = std::move(parts.config);
  m->tokenizer_spec_ = std::move(parts.tokenizer_spec);
  m->tensors_ = std::move(parts.tensors);
  m->format_ = std::move(parts.format);
  m->files_ = std::move(parts.files);
  for (size_t i = 0; i < m->tensors_.size(); ++i) {
    if (!m->index_.emplace(m->tensors_[i].name, i).second) {
      return make_error("tensor '%s' appears twice", m->tensors_[i].name.c_str());
    }
  }
  if (auto s = validate_config(m->config_); !s) return Error{s.error()};
  const ModelFile* self = m.get();
  auto lookup = [self](const std::string& name) { return self->tensor(name); };
  if (auto s = validate_tensors(m->config_, lookup); !s) return Error{s.error()};
  return m;
}

const TensorView* ModelFile::tensor(const std::string& gguf_name) const {
  auto it = index_.find(gguf_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

int64_t ModelFile::num_parameters() const {
  int64_t n = 0;
  for (const TensorView& t : tensors_) n += t.num_elements();
  return n;
}

size_t ModelFile::weight_bytes() const {
  size_t n = 0;
  for (const TensorView& t : tensors_) n += t.nbytes;
  return n;
}

}  // namespace loom
