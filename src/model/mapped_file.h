// A whole file mapped read-only into memory (or, for tests, an owned byte buffer). Model weights
// are used in place from the mapping: nothing is copied at load time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util/result.h"

namespace loom {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to size() == 0 and data() == nullptr.
  static Result<std::shared_ptr<const MappedFile>> open(const std::string& path);
  // Wraps an owned buffer (tests, generated files). `name` stands in for the path in messages.
  static std::shared_ptr<const MappedFile> from_bytes(std::vector<uint8_t> bytes, std::string name);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;     // non-null when mmap'ed
  std::vector<uint8_t> owned_;  // from_bytes
};

}  // namespace loom
