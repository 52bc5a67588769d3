// safetensors reader: one file, or a sharded set listed by model.safetensors.index.json.
// Layout: u64 header_len (little-endian), header_len bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, "__metadata__":
//   {}}
// then the data section; offsets are relative to its start. Shapes are outermost first.
// Every offset and size is checked against the file before use; data is used in place.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/mapped_file.h"
#include "model/tensor.h"
#include "util/result.h"

namespace loom {

struct SafetensorsTensor {
  std::string name;
  DType type = DType::kF32;    // F32, F16 or BF16
  std::vector<int64_t> shape;  // outermost first, as safetensors stores it
  const void* data = nullptr;
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  // A header larger than this is refused (the format's own reference limit is 100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

  static Result<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  static Result<std::unique_ptr<SafetensorsFile>> parse(std::shared_ptr<const MappedFile> file);

  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* tensor(const std::string& name) const;
  std::shared_ptr<const MappedFile> shared_file() const { return file_; }

 private:
  explicit SafetensorsFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) {}
  Status parse_header();

  std::shared_ptr<const MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// All tensors of an HF checkpoint directory: model.safetensors.index.json when present (every
// shard it names is opened and every listed tensor must be in its shard), else model.safetensors,
// else the directory's only *.safetensors file.
struct SafetensorsSet {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::vector<const SafetensorsTensor*> tensors;  // in shard order, then file order
};
Result<SafetensorsSet> open_safetensors_dir(const std::string& dir);

}  // namespace loom
