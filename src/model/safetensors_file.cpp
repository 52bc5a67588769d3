#include "model/safetensors_file.h"

#include <cinttypes>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

namespace loom {
namespace {

using nlohmann::json;

// A non-negative integer JSON value that fits int64.
bool as_index(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
  } else if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return false;
    *out = static_cast<uint64_t>(i);
  } else {
    return false;
  }
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

}  // namespace

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  auto file = MappedFile::open(path);
  if (!file) return Error{file.error()};
  return parse(std::move(file).value());
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::parse(
    std::shared_ptr<const MappedFile> file) {
  std::unique_ptr<SafetensorsFile> st(new SafetensorsFile(std::move(file)));
  if (auto s = st->parse_header(); !s) return Error{s.error()};
  return st;
}

const SafetensorsTensor* SafetensorsFile::tensor(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::parse_header() {
  const char* path = file_->path().c_str();
  const size_t size = file_->size();
  if (size < 8) {
    return make_error(
        "safetensors '%s': file is %zu bytes, too small for the 8-byte header "
        "length",
        path, size);
  }
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_->data(), 8);
  if (header_len > size - 8) {
    return make_error("safetensors '%s': header length %" PRIu64
                      " is past the end of the file (%zu bytes)",
                      path, header_len, size);
  }
  if (header_len > kMaxHeaderBytes) {
    return make_error("safetensors '%s': header length %" PRIu64 " exceeds the %" PRIu64
                      "-byte limit",
                      path, header_len, kMaxHeaderBytes);
  }
  const char* header = reinterpret_cast<const char*>(file_->data() + 8);
  json j = json::parse(header, header + header_len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error("safetensors '%s': header is not valid JSON", path);
  if (!j.is_object()) return make_error("safetensors '%s': header is not a JSON object", path);
  const uint8_t* data = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const json& e = it.value();
    auto bad = [&](const char* what) {
      return make_error("safetensors '%s': tensor '%s': %s", path, name.c_str(), what);
    };
    if (!e.is_object()) return bad("entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return bad("missing or non-string 'dtype'");
    if (sh == e.end() || !sh->is_array()) return bad("missing or non-array 'shape'");
    if (off == e.end() || !off->is_array() || off->size() != 2) {
      return bad("'data_offsets' must be an array of two integers");
    }
    SafetensorsTensor t;
    t.name = name;
    const std::string dtype = dt->get<std::string>();
    size_t elem_bytes = 0;
    if (dtype == "F32") {
      t.type = DType::kF32;
      elem_bytes = 4;
    } else if (dtype == "F16") {
      t.type = DType::kF16;
      elem_bytes = 2;
    } else if (dtype == "BF16") {
      t.type = DType::kBF16;
      elem_bytes = 2;
    } else {
      return make_error(
          "safetensors '%s': tensor '%s' has dtype '%s', which is not supported "
          "(supported: F32, F16, BF16)",
          path, name.c_str(), dtype.c_str());
    }
    if (sh->size() > 8) return bad("more than 8 dimensions");
    uint64_t num_elements = 1;
    for (const json& d : *sh) {
      uint64_t dim = 0;
      if (!as_index(d, &dim)) return bad("shape holds a negative or non-integer dimension");
      t.shape.push_back(static_cast<int64_t>(dim));
      if (__builtin_mul_overflow(num_elements, dim, &num_elements)) {
        return bad("the element count overflows");
      }
    }
    uint64_t begin = 0, end = 0, nbytes = 0;
    if (!as_index((*off)[0], &begin) || !as_index((*off)[1], &end)) {
      return bad("'data_offsets' must hold non-negative integers");
    }
    if (begin > end) return bad("'data_offsets' begin is after end");
    if (end > data_size) {
      return make_error("safetensors '%s': tensor '%s': data [%" PRIu64 ", %" PRIu64
                        ") past the end of the data section (%" PRIu64 " bytes)",
                        path, name.c_str(), begin, end, data_size);
    }
    if (__builtin_mul_overflow(num_elements, elem_bytes, &nbytes) || nbytes != end - begin) {
      return make_error("safetensors '%s': tensor '%s': data_offsets span %" PRIu64
                        " bytes, but shape and dtype need %" PRIu64,
                        path, name.c_str(), end - begin, num_elements * elem_bytes);
    }
    t.data = nbytes == 0 ? nullptr : data + begin;
    t.nbytes = static_cast<size_t>(nbytes);
    index_.emplace(t.name, tensors_.size());  // JSON object keys are unique
    tensors_.push_back(std::move(t));
  }
  return ok_status();
}

Result<SafetensorsSet> open_safetensors_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  SafetensorsSet set;
  std::error_code ec;
  const fs::path root(dir);
  const fs::path index_path = root / "model.safetensors.index.json";
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    std::stringstream buf;
    buf << in.rdbuf();
    json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return make_error("'%s' is not valid JSON", index_path.c_str());
    }
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object() || wm->empty()) {
      return make_error("'%s' has no 'weight_map' object", index_path.c_str());
    }
    std::map<std::string, size_t> shard_index;                // file name -> position in set.files
    std::vector<std::pair<std::string, std::string>> listed;  // tensor, shard
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string()) {
        return make_error("'%s': weight_map entry '%s' is not a file name", index_path.c_str(),
                          it.key().c_str());
      }
      std::string shard = it.value().get<std::string>();
      // A shard must be a plain file name inside the model directory.
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
        return make_error("'%s': shard name '%s' is not a plain file name", index_path.c_str(),
                          shard.c_str());
      }
      if (!shard_index.count(shard)) {
        auto f = SafetensorsFile::open((root / shard).string());
        if (!f) return Error{f.error()};
        shard_index[shard] = set.files.size();
        set.files.push_back(std::move(f).value());
      }
      listed.emplace_back(it.key(), shard);
    }
    for (const auto& [name, shard] : listed) {
      if (set.files[shard_index[shard]]->tensor(name) == nullptr) {
        return make_error("tensor '%s' is listed in '%s' but missing from shard '%s'", name.c_str(),
                          index_path.c_str(), shard.c_str());
      }
    }
  } else {
    fs::path single = root / "model.safetensors";
    if (!fs::exists(single, ec)) {
      std::vector<fs::path> found;
      for (const auto& entry : fs::directory_iterator(root, ec)) {
        if (entry.path().extension() == ".safetensors") found.push_back(entry.path());
      }
      if (found.size() != 1) {
        return make_error(
            "'%s': expected model.safetensors, a model.safetensors.index.json or "
            "exactly one *.safetensors file, found %zu *.safetensors files",
            dir.c_str(), found.size());
      }
      single = found[0];
    }
    auto f = SafetensorsFile::open(single.string());
    if (!f) return Error{f.error()};
    set.files.push_back(std::move(f).value());
  }
  for (const auto& f : set.files) {
    for (const SafetensorsTensor& t : f->tensors()) set.tensors.push_back(&t);
  }
  return set;
}

}  // namespace loom
