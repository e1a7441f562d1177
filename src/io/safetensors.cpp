#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "io/gguf.h"

namespace dsv4 {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string TensorInfo::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {
// A U8 [rows, row bytes] tensor named "<format>:<cols>" in the metadata becomes a logical [rows, cols] view.
template <class Bad>
void apply_block_format(TensorInfo& t, const json& v, const Bad& bad) {
  const std::string s = v.is_string() ? v.get<std::string>() : std::string();
  const size_t colon = s.find(':');
  BlockFormat f{};
  if (colon == std::string::npos || !parse_block_format(std::string_view(s).substr(0, colon), f))
    bad(fmt::format("block format {} is not <format>:<columns> with a known format", v.dump()));
  int64_t cols = 0;
  try {
    size_t used = 0;
    cols = std::stoll(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) cols = 0;
  } catch (const std::exception&) {
    cols = 0;
  }
  const auto& info = block_info(f);
  if (cols <= 0 || cols % info.elems) bad(fmt::format("block format {}: columns must be a positive multiple of {}", s, info.elems));
  if (t.dtype != DType::U8 || t.shape.size() != 2 || t.shape[1] != block_row_bytes(f, cols))
    bad(fmt::format("a {} tensor of {} columns must be U8 [rows, {}], not {} {}", block_name(f), cols,
                    block_row_bytes(f, cols), dtype_name(t.dtype), t.shape_str()));
  t.format = f;
  t.shape[1] = cols;
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const size_t size = file_.size();
  if (size < 8) fail("{}: truncated safetensors file ({} bytes, no header length)", path, size);
  uint64_t hlen = 0;
  std::memcpy(&hlen, file_.data(), 8);
  if (hlen < 2 || hlen > (100u << 20)) fail("{}: implausible safetensors header length {}", path, hlen);
  if (8 + hlen > size) fail("{}: header length {} runs past the end of the file ({} bytes)", path, hlen, size);
  json header;
  try {
    header = parse_json(std::string_view(reinterpret_cast<const char*>(file_.data()) + 8, hlen), path + ": safetensors header");
  } catch (const json::exception& e) {
    fail("{}: bad safetensors header JSON: {}", path, e.what());
  }
  if (!header.is_object()) fail("{}: safetensors header is not a JSON object", path);
  const uint8_t* base = file_.data() + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  const json block_formats = header.contains("__metadata__") && header["__metadata__"].is_object()
                                ? header["__metadata__"] : json::object();
  for (auto& item : block_formats.items()) {
    const std::string& key = item.key();
    if (key.rfind(kBlockFormatKeyPrefix, 0) == 0 && !header.contains(key.substr(kBlockFormatKeyPrefix.size())))
      fail("{}: __metadata__ names a block format for '{}', which is not a tensor of the file", path,
           key.substr(kBlockFormatKeyPrefix.size()));
  }
  for (auto& item : header.items()) {
    // Plain references, not a structured binding: clang 14 rejects lambdas capturing bindings.
    const std::string& name = item.key();
    auto& v = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& why) { fail("{}: tensor '{}': {}", path, name, why); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("entry needs dtype, shape and data_offsets");
    TensorInfo t;
    t.name = name;
    t.file = &file_.path();
    if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), t.dtype))
      bad(fmt::format("unknown dtype {}", v["dtype"].dump()));
    if (!v["shape"].is_array()) bad("shape is not an array");
    uint64_t numel = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) bad("shape has a non-integer or negative dimension");
      uint64_t dd = d.get<uint64_t>();
      if (dd && numel > (uint64_t(1) << 50) / dd) bad("shape is too large");
      numel *= dd;
      t.shape.push_back(int64_t(dd));
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("data_offsets must be two non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) bad(fmt::format("data_offsets [{}, {}] are reversed", b, e));
    if (e > data_size)
      bad(fmt::format("data_offsets [{}, {}] run past the end of the file (data region is {} bytes; "
                      "truncated file?)", b, e, data_size));
    uint64_t want = numel * dtype_size(t.dtype);
    if (e - b != want)
      bad(fmt::format("byte size {} does not match shape {} x {} ({} bytes)", e - b, t.shape_str(),
                      dtype_name(t.dtype), want));
    t.data = base + b;
    t.nbytes = size_t(e - b);
    if (block_formats.contains(std::string(kBlockFormatKeyPrefix) + name))
      apply_block_format(t, block_formats[std::string(kBlockFormatKeyPrefix) + name], bad);
    spans.emplace_back(b, e);
    tensors_.emplace(name, std::move(t));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].first < spans[i - 1].second)
      fail("{}: tensors overlap at data offsets [{}, {}) and [{}, {})", path, spans[i - 1].first,
           spans[i - 1].second, spans[i].first, spans[i].second);
}

namespace {

// A shard must be a plain file name inside the checkpoint folder, naming a regular file (mapping a
// device or a FIFO would read garbage or block). A symlink is followed: Hugging Face cache snapshots
// link every shard to ../../blobs/<hash>, so only the name is confined, not the target.
void check_shard(const std::string& dir, const std::string& shard, const std::string& who) {
  constexpr std::string_view kSeparators("/\\\0", 3);  // '/', '\\', NUL
  if (shard.empty() || shard == "." || shard == ".." || shard.find_first_of(kSeparators) != std::string::npos)
    fail("{}: shard '{}' is not a plain file name inside the checkpoint folder", who, shard);
  const fs::path p = fs::path(dir) / shard;
  std::error_code ec;
  const fs::file_status st = fs::status(p, ec);  // follows symlinks
  if (!fs::exists(st)) {
    if (fs::is_symlink(fs::symlink_status(p, ec))) fail("{}: shard '{}' is a dangling symlink", who, shard);
    fail("{}: shard '{}' is missing from {}", who, shard, dir);
  }
  if (!fs::is_regular_file(st)) fail("{}: shard '{}' is not a regular file", who, shard);
}

}  // namespace

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  if (is_gguf_path(dir)) {
    open_gguf(dir);
    return;
  }
  if (!fs::is_directory(dir)) fail("checkpoint folder {} does not exist", dir);
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> shard file name
  std::vector<std::string> shard_names;
  if (fs::exists(index_path)) {
    if (!fs::is_regular_file(index_path)) fail("{}: not a regular file", index_path.string());
    json idx;
    try {
      idx = parse_json(read_text_file(index_path.string()), index_path.string());
    } catch (const json::exception& e) {
      fail("{}: bad JSON: {}", index_path.string(), e.what());
    }
    if (!idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail("{}: missing 'weight_map' object", index_path.string());
    for (auto& [name, file] : idx["weight_map"].items()) {
      if (!file.is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path.string(), name);
      const std::string& shard = file.get_ref<const std::string&>();
      weight_map[name] = shard;
      if (std::find(shard_names.begin(), shard_names.end(), shard) != shard_names.end()) continue;
      check_shard(dir, shard, fmt::format("{}: weight_map entry '{}'", index_path.string(), name));
      shard_names.push_back(shard);
    }
  } else {
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".safetensors" && e.path().filename() != "golden.safetensors")
        shard_names.push_back(e.path().filename().string());
    std::sort(shard_names.begin(), shard_names.end());
    if (shard_names.empty()) fail("{}: no model.safetensors.index.json and no *.safetensors files", dir);
    for (auto& s : shard_names) check_shard(dir, s, dir);
  }
  for (auto& s : shard_names) {
    const fs::path p = fs::path(dir) / s;
    files_.push_back(std::make_unique<SafetensorsFile>(p.string()));
    for (auto& [name, t] : files_.back()->tensors()) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(name);
        if (it == weight_map.end() || it->second != s) continue;  // not this shard's per the index
      }
      if (index_.count(name)) fail("tensor '{}' appears in more than one shard", name);
      index_[name] = &t;
    }
  }
  for (auto& [name, file] : weight_map)
    if (!index_.count(name)) fail("tensor '{}' is listed in the index under {} but is not in that file", name, file);
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

const TensorInfo& Checkpoint::get(const std::string& name) const {
  auto* t = find(name);
  if (!t) fail("{}: missing tensor '{}'", dir_, name);
  return *t;
}

Checkpoint::Location Checkpoint::locate(const uint8_t* p) const {
  for (auto& f : files_) {
    const MappedFile& m = f->mapped();
    if (p >= m.data() && p < m.data() + m.size()) return {&m.path(), uint64_t(p - m.data())};
  }
  if (gguf_) return locate_gguf(p);
  fail("address {} lies in no shard of {}", static_cast<const void*>(p), dir_);
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors) {
  json header = json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t off = 0;
  for (auto& t : tensors) {
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write {}", path);
  uint64_t n = h.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(h.data(), std::streamsize(h.size()));
  for (auto& t : tensors) f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
  if (!f) fail("write to {} failed", path);
}

}  // namespace dsv4
