// GGUF reader: every length, count, type and offset is checked against the mapped file before use,
// so a truncated or hostile file gives an Error naming it, never an out-of-bounds read.
#include "io/gguf.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/block_format.h"
#include "core/error.h"

namespace dsv4 {

namespace fs = std::filesystem;

const char* gguf_type_name(GgufType t) {
  static const char* const names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) < 13 ? names[uint32_t(t)] : "?";
}

size_t GgufValue::array_size() const { return ints.size() + floats.size() + strs.size(); }

namespace {

constexpr GgmlTypeInfo kPlain[] = {
    {0, "f32", 1, 4}, {1, "f16", 1, 2}, {24, "i8", 1, 1}, {25, "i16", 1, 2}, {26, "i32", 1, 4},
    {27, "i64", 1, 8}, {28, "f64", 1, 8}, {30, "bf16", 1, 2},
};

// Bounds-checked little-endian reader over the mapped header.
struct Cursor {
  const uint8_t* p;
  size_t size, pos = 0;
  const std::string& path;

  void need(uint64_t n, const char* what) const {
    if (n > size - pos) fail("{}: truncated: {} at byte {} runs past the end of the file ({} bytes)", path, what, pos, size);
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str(const char* what) {
    const uint64_t n = get<uint64_t>(what);
    if (n > size - pos)
      fail("{}: {} at byte {} has length {}, past the end of the file ({} bytes)", path, what, pos - 8, n, size);
    std::string s(reinterpret_cast<const char*>(p + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
};

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool is_int(GgufType t) {
  return t != GgufType::F32 && t != GgufType::F64 && t != GgufType::STRING && t != GgufType::ARRAY;
}

// Reads one scalar of type t into (i, u, f); returns false for non-scalars.
void read_scalar(Cursor& c, GgufType t, GgufValue& v, const std::string& key) {
  switch (t) {
    case GgufType::U8: v.u = c.get<uint8_t>("a u8 value"); v.i = int64_t(v.u); break;
    case GgufType::I8: v.i = c.get<int8_t>("an i8 value"); v.u = uint64_t(v.i); break;
    case GgufType::U16: v.u = c.get<uint16_t>("a u16 value"); v.i = int64_t(v.u); break;
    case GgufType::I16: v.i = c.get<int16_t>("an i16 value"); v.u = uint64_t(v.i); break;
    case GgufType::U32: v.u = c.get<uint32_t>("a u32 value"); v.i = int64_t(v.u); break;
    case GgufType::I32: v.i = c.get<int32_t>("an i32 value"); v.u = uint64_t(v.i); break;
    case GgufType::U64: v.u = c.get<uint64_t>("a u64 value"); v.i = int64_t(v.u); break;
    case GgufType::I64: v.i = c.get<int64_t>("an i64 value"); v.u = uint64_t(v.i); break;
    case GgufType::F32: v.f = c.get<float>("an f32 value"); break;
    case GgufType::F64: v.f = c.get<double>("an f64 value"); break;
    case GgufType::BOOL: {
      const uint8_t b = c.get<uint8_t>("a bool value");
      if (b > 1) fail("{}: key '{}': bool value {} is neither 0 nor 1", c.path, key, b);
      v.i = b, v.u = b;
      break;
    }
    default: fail("{}: key '{}': value type {} is not a scalar", c.path, key, uint32_t(t));
  }
}

GgufType value_type(Cursor& c, const std::string& key, const char* what) {
  const uint32_t t = c.get<uint32_t>(what);
  if (t > uint32_t(GgufType::F64)) fail("{}: key '{}': unknown value type {}", c.path, key, t);
  return GgufType(t);
}

void read_value(Cursor& c, GgufType t, GgufValue& v, const std::string& key) {
  v.type = t;
  if (t == GgufType::STRING) {
    v.s = c.str("a string value");
    return;
  }
  if (t != GgufType::ARRAY) return read_scalar(c, t, v, key);
  v.elem = value_type(c, key, "an array element type");
  if (v.elem == GgufType::ARRAY) fail("{}: key '{}': nested arrays are not supported", c.path, key);
  const uint64_t n = c.get<uint64_t>("an array length");
  // Each element takes at least one byte (a string at least its 8-byte length): bound n before allocating.
  const uint64_t min = v.elem == GgufType::STRING ? 8 : scalar_size(v.elem);
  if (n > (c.size - c.pos) / min)
    fail("{}: key '{}': array of {} {} elements runs past the end of the file", c.path, key, n,
         gguf_type_name(v.elem));
  if (v.elem == GgufType::STRING) {
    v.strs.reserve(size_t(n));
    for (uint64_t k = 0; k < n; ++k) v.strs.push_back(c.str("an array string"));
    return;
  }
  GgufValue e;
  if (v.elem == GgufType::F32 || v.elem == GgufType::F64) {
    v.floats.reserve(size_t(n));
    for (uint64_t k = 0; k < n; ++k) read_scalar(c, v.elem, e, key), v.floats.push_back(e.f);
    return;
  }
  v.ints.reserve(size_t(n));
  for (uint64_t k = 0; k < n; ++k) {
    read_scalar(c, v.elem, e, key);
    if (v.elem == GgufType::U64 && e.u > uint64_t(INT64_MAX))
      fail("{}: key '{}': u64 array element {} exceeds the int64 range", c.path, key, e.u);
    v.ints.push_back(e.i);
  }
}

}  // namespace

const GgmlTypeInfo* ggml_type_info(int id) {
  for (const auto& t : kPlain)
    if (t.id == id) return &t;
  // Block formats come from the engine's own table: the types it can also compute with.
  static const auto blocks = [] {
    std::vector<GgmlTypeInfo> v;
    for (const auto& b : kBlockFormats) v.push_back({b.ggml_type, b.name.data(), b.elems, b.bytes});
    return v;
  }();
  for (const auto& t : blocks)
    if (t.id == id) return &t;
  return nullptr;
}

GgufFile::GgufFile(const std::string& path) : file_(path) {
  const std::string& p = file_.path();
  Cursor c{file_.data(), file_.size(), 0, p};
  if (c.size < 4 || std::memcmp(c.p, "GGUF", 4) != 0) fail("{}: not a GGUF file (bad magic)", p);
  c.pos = 4;
  version_ = c.get<uint32_t>("the version");
  if (version_ != 2 && version_ != 3) fail("{}: unsupported GGUF version {} (this reader takes 2 and 3)", p, version_);
  const uint64_t n_tensors = c.get<uint64_t>("the tensor count");
  const uint64_t n_kv = c.get<uint64_t>("the metadata count");
  // A key-value pair takes at least 12 bytes, a tensor record at least 24: counts beyond that are lies.
  if (n_kv > (c.size - c.pos) / 12) fail("{}: metadata count {} cannot fit in the file", p, n_kv);
  if (n_tensors > (c.size - c.pos) / 24) fail("{}: tensor count {} cannot fit in the file", p, n_tensors);

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.str("a metadata key");
    if (key.empty()) fail("{}: metadata entry {} has an empty key", p, k);
    GgufValue v;
    read_value(c, value_type(c, key, "a value type"), v, key);
    if (!kv_.emplace(key, std::move(v)).second) fail("{}: duplicate metadata key '{}'", p, key);
  }
  if (auto* a = find("general.alignment")) {
    if (a->type != GgufType::U32 && a->type != GgufType::U64 && a->type != GgufType::I32)
      fail("{}: key 'general.alignment' must be an integer, got {}", p, gguf_type_name(a->type));
    if (a->i <= 0 || (a->u & (a->u - 1)) || a->u > (1u << 20))
      fail("{}: key 'general.alignment' = {} is not a power of two in [1, 2^20]", p, a->i);
    alignment_ = a->u;
  }

  tensors_.reserve(size_t(n_tensors));
  std::map<std::string, size_t> names;
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = c.str("a tensor name");
    if (!names.emplace(t.name, size_t(k)).second) fail("{}: duplicate tensor '{}'", p, t.name);
    const uint32_t nd = c.get<uint32_t>("a tensor rank");
    if (nd < 1 || nd > 4) fail("{}: tensor '{}' has {} dimensions (1 to 4 allowed)", p, t.name, nd);
    uint64_t numel = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t n = c.get<uint64_t>("a tensor dimension");
      if (n == 0 || n > (uint64_t(1) << 40)) fail("{}: tensor '{}' dimension {} = {} is out of range", p, t.name, d, n);
      if (numel > (uint64_t(1) << 50) / n) fail("{}: tensor '{}' has too many elements", p, t.name);
      numel *= n;
      t.ne.push_back(int64_t(n));
    }
    const uint32_t type = c.get<uint32_t>("a tensor type");
    const GgmlTypeInfo* ti = ggml_type_info(int(type));
    if (!ti) fail("{}: tensor '{}' has ggml type {}, which this engine does not support", p, t.name, type);
    t.type = int(type);
    if (t.ne[0] % ti->block_elems)
      fail("{}: tensor '{}' row of {} is not a whole number of {} blocks of {}", p, t.name, t.ne[0], ti->name,
           ti->block_elems);
    t.nbytes = size_t(numel / uint64_t(ti->block_elems) * uint64_t(ti->block_bytes));
    t.offset = c.get<uint64_t>("a tensor offset");
    if (t.offset % alignment_) fail("{}: tensor '{}' offset {} is not a multiple of the alignment {}", p, t.name, t.offset, alignment_);
    tensors_.push_back(std::move(t));
  }
  const uint64_t data_start = (c.pos + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > c.size && !tensors_.empty()) fail("{}: truncated: no tensor data after the header", p);
  const uint64_t data_size = c.size > data_start ? c.size - data_start : 0;
  std::vector<const GgufTensor*> by_offset;
  for (auto& t : tensors_) {
    if (t.offset > data_size || t.nbytes > data_size - t.offset)
      fail("{}: tensor '{}' data [{}, +{}) lies outside the file's data section ({} bytes)", p, t.name, t.offset,
           t.nbytes, data_size);
    t.data = file_.data() + data_start + t.offset;
    t.file = &file_.path();
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k - 1]->offset + by_offset[k - 1]->nbytes > by_offset[k]->offset)
      fail("{}: tensors '{}' and '{}' overlap", p, by_offset[k - 1]->name, by_offset[k]->name);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  auto* v = find(key);
  if (!v) fail("{}: missing metadata key '{}'", path(), key);
  return *v;
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!is_int(v.type) || v.type == GgufType::BOOL)
    fail("{}: key '{}' must be an integer, got {}", path(), key, gguf_type_name(v.type));
  const bool is_signed = v.type == GgufType::I8 || v.type == GgufType::I16 || v.type == GgufType::I32 || v.type == GgufType::I64;
  if (is_signed && v.i < 0) fail("{}: key '{}' = {} must not be negative", path(), key, v.i);
  return v.u;
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = get(key);
  if (!is_int(v.type) || v.type == GgufType::BOOL)
    fail("{}: key '{}' must be an integer, got {}", path(), key, gguf_type_name(v.type));
  if (v.type == GgufType::U64 && v.u > uint64_t(INT64_MAX)) fail("{}: key '{}' = {} is out of range", path(), key, v.u);
  return v.i;
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type == GgufType::F32 || v.type == GgufType::F64) return v.f;
  return double(get_int(key));
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::BOOL) fail("{}: key '{}' must be a bool, got {}", path(), key, gguf_type_name(v.type));
  return v.i != 0;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::STRING) fail("{}: key '{}' must be a string, got {}", path(), key, gguf_type_name(v.type));
  return v.s;
}

const std::vector<int64_t>& GgufFile::get_ints(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::ARRAY || !is_int(v.elem))
    fail("{}: key '{}' must be an integer array, got {}", path(), key, gguf_type_name(v.type));
  return v.ints;
}

const std::vector<double>& GgufFile::get_floats(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::ARRAY || (v.elem != GgufType::F32 && v.elem != GgufType::F64))
    fail("{}: key '{}' must be a float array, got {}", path(), key, gguf_type_name(v.type));
  return v.floats;
}

const std::vector<std::string>& GgufFile::get_strings(const std::string& key) const {
  const GgufValue& v = get(key);
  if (v.type != GgufType::ARRAY || v.elem != GgufType::STRING)
    fail("{}: key '{}' must be a string array, got {}", path(), key, gguf_type_name(v.type));
  return v.strs;
}

GgufModel::GgufModel(const std::string& path) {
  // llama.cpp's gguf-split names shards PREFIX-00001-of-0000N.gguf; split.no counts from 0.
  static const std::regex split_re(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
  std::smatch m;
  const std::string fname = fs::path(path).filename().string();
  auto first = std::make_unique<GgufFile>(path);
  // One shard (gguf-split may write split.count = 1) needs no name pattern.
  if (!first->find("split.count") || first->get_uint("split.count") == 1) {
    files_.push_back(std::move(first));
  } else {
    const uint64_t n = first->get_uint("split.count");
    if (n < 1 || n > 99999) fail("{}: key 'split.count' = {} is out of range", path, n);
    if (!std::regex_match(fname, m, split_re))
      fail("{}: key 'split.count' = {} but the name does not follow NAME-00001-of-{:05}.gguf", path, n, n);
    if (std::stoull(m[3].str()) != n)
      fail("{}: the name says {} shards but key 'split.count' says {}", path, m[3].str(), n);
    const fs::path dir = fs::path(path).parent_path();
    for (uint64_t k = 0; k < n; ++k) {
      const std::string shard = (dir / fmt::format("{}-{:05}-of-{:05}.gguf", m[1].str(), k + 1, n)).string();
      auto f = (fs::path(shard).filename() == fname) ? std::move(first) : std::make_unique<GgufFile>(shard);
      if (!f) fail("{}: shard {} listed twice", path, shard);
      if (f->get_uint("split.count") != n)
        fail("{}: key 'split.count' = {} disagrees with {} ({})", shard, f->get_uint("split.count"), path, n);
      if (f->get_uint("split.no") != k) fail("{}: key 'split.no' = {}, expected {}", shard, f->get_uint("split.no"), k);
      files_.push_back(std::move(f));
    }
  }
  uint64_t total = 0;
  for (auto& f : files_)
    for (auto& t : f->tensors()) {
      if (!index_.emplace(t.name, &t).second) fail("{}: tensor '{}' appears in more than one shard", f->path(), t.name);
      ++total;
    }
  if (files_.size() > 1 && files_.front()->find("split.tensors.count") &&
      uint64_t(files_.front()->get_uint("split.tensors.count")) != total)
    fail("{}: key 'split.tensors.count' = {} but the shards hold {} tensors", files_.front()->path(),
         files_.front()->get_uint("split.tensors.count"), total);
}

const GgufTensor* GgufModel::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

bool is_gguf_path(const std::string& path) {
  std::error_code ec;
  return fs::path(path).extension() == ".gguf" && !fs::is_directory(path, ec);
}

}  // namespace dsv4
