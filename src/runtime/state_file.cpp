#include "runtime/state_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"
#include "core/hash.h"
#include "runtime/ram_budget.h"

namespace dsv4 {

namespace {

constexpr char kMagic[8] = {'D', 'S', 'V', '4', 'S', 'T', 'A', 'T'};
constexpr uint32_t kVersion = 1;

struct Writer {
  std::vector<uint8_t> b;
  void raw(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
  template <class T>
  void put(T v) {
    raw(&v, sizeof v);
  }
  void floats(const std::vector<float>& v) {
    put<uint64_t>(v.size());
    raw(v.data(), v.size() * 4);
  }
  void rows(const KVRows& r) {
    put<uint64_t>(r.row_bytes());
    put<uint64_t>(r.size());
    raw(r.encoded().data(), r.encoded().size());
  }
  void compressor(const CompressorState& c) {
    floats(c.kv);
    floats(c.score);
    floats(c.prev_kv);
    floats(c.prev_score);
    put<uint8_t>(c.has_prev ? 1 : 0);
  }
};

// Every read is bounds-checked; the first failure sticks and names what was being read.
struct Reader {
  std::span<const uint8_t> b;
  size_t at = 0;
  std::string err;
  bool ok() const { return err.empty(); }
  bool bad(std::string what) {
    if (err.empty()) err = std::move(what);
    return false;
  }
  bool raw(void* p, size_t n, const char* what) {
    if (!ok()) return false;
    if (n > b.size() - at) return bad(fmt::format("truncated while reading {}", what));
    std::memcpy(p, b.data() + at, n);
    at += n;
    return true;
  }
  template <class T>
  T get(const char* what) {
    T v{};
    raw(&v, sizeof v, what);
    return v;
  }
  // A vector whose size the model fixes (want) or, with want == SIZE_MAX, any multiple of `unit`.
  bool floats(std::vector<float>& v, size_t want, size_t unit, const char* what) {
    const uint64_t n = get<uint64_t>(what);
    if (!ok()) return false;
    if (want != SIZE_MAX ? n != want : (unit == 0 ? n != 0 : n % unit != 0))
      return bad(fmt::format("{} has {} values, the model's layout wants {}", what, n,
                             want != SIZE_MAX ? std::to_string(want) : "a multiple of " + std::to_string(unit)));
    if (n > (b.size() - at) / 4) return bad(fmt::format("truncated while reading {}", what));
    v.resize(n);
    return raw(v.data(), n * 4, what);
  }
  bool rows(KVRows& r, const char* what) {
    const uint64_t rb = get<uint64_t>(what), n = get<uint64_t>(what);
    if (!ok()) return false;
    if (rb != r.row_bytes()) return bad(fmt::format("{}: rows of {} bytes, the model's are {}", what, rb, r.row_bytes()));
    if (rb == 0 ? n != 0 : n > (b.size() - at) / rb) return bad(fmt::format("truncated while reading {}", what));
    r.assign_encoded(b.data() + at, n);
    at += n * rb;
    return true;
  }
  bool compressor(CompressorState& c, const char* what) {
    floats(c.kv, c.kv.size(), 0, what);
    floats(c.score, c.score.size(), 0, what);
    floats(c.prev_kv, c.prev_kv.size(), 0, what);
    floats(c.prev_score, c.prev_score.size(), 0, what);
    const uint8_t p = get<uint8_t>(what);
    if (ok() && p > 1) return bad(fmt::format("{}: bad flag", what));
    c.has_prev = p == 1;
    return ok();
  }
};

void put_blocks(Writer& w, const std::vector<BlockState>& v) {
  w.put<uint64_t>(v.size());
  for (auto& l : v) {
    w.rows(l.attn.ring);
    w.rows(l.attn.compressed);
    w.compressor(l.attn.comp);
    w.compressor(l.attn.indexer.comp);
    w.floats(l.attn.indexer.keys);
  }
}

bool get_blocks(Reader& r, std::vector<BlockState>& v, int index_dim, const char* what) {
  const uint64_t n = r.get<uint64_t>(what);
  if (!r.ok()) return false;
  if (n != v.size()) return r.bad(fmt::format("{} blocks in {}, the model has {}", n, what, v.size()));
  for (auto& l : v) {
    r.rows(l.attn.ring, "a window ring");
    r.rows(l.attn.compressed, "compressed KV");
    r.compressor(l.attn.comp, "a compressor");
    r.compressor(l.attn.indexer.comp, "an indexer compressor");
    r.floats(l.attn.indexer.keys, SIZE_MAX, size_t(std::max(0, index_dim)), "index keys");
  }
  return r.ok();
}

void set_why(std::string* why, std::string s) {
  if (why) *why = std::move(s);
}

}  // namespace

uint32_t numerics_bits(const NumericsOptions& o) {
  return uint32_t(o.act_quant) | uint32_t(o.kv_fp8_roundtrip) << 1 | uint32_t(o.index_fp4_roundtrip) << 2 |
         uint32_t(o.shared_expert_clamp) << 3;
}

StateFileKey state_file_key(const Model& m) { return {model_identity(m), numerics_bits(m.numerics())}; }

uint64_t tokens_hash(std::span<const int32_t> ids) { return fnv1a(kFnvBasis, ids.data(), ids.size() * 4); }

std::vector<uint8_t> encode_state(const SequenceState& st, std::span<const int32_t> tokens, const StateFileKey& key) {
  DSV4_CHECK(!st.marked(), "a marked sequence state cannot be saved: its journals are not part of the file");
  DSV4_CHECK(st.pos == int64_t(tokens.size()), "state at position {} saved with {} tokens", st.pos, tokens.size());
  Writer w;
  w.raw(kMagic, 8);
  w.put<uint32_t>(kVersion);
  w.put<uint32_t>(key.numerics);
  w.put<uint64_t>(key.model_id);
  w.put<uint64_t>(tokens.size());
  w.put<uint64_t>(tokens_hash(tokens));
  w.put<uint64_t>(0);  // file size, filled in below
  w.raw(tokens.data(), tokens.size() * 4);
  w.put<int64_t>(st.pos);
  w.put<int64_t>(st.mtp_pos);
  w.put<int64_t>(st.dspark_pos);
  put_blocks(w, st.layers);
  put_blocks(w, st.mtp);
  put_blocks(w, st.dspark);
  const uint64_t size = w.b.size() + 8;
  std::memcpy(w.b.data() + 40, &size, 8);
  w.put<uint64_t>(fnv1a(kFnvBasis, w.b.data(), w.b.size()));
  return std::move(w.b);
}

std::optional<StateFileHeader> parse_state_header(std::span<const uint8_t> b, const StateFileKey& key,
                                                  std::string* why) {
  if (b.size() < kStateHeaderBytes) return set_why(why, "truncated header"), std::nullopt;
  if (std::memcmp(b.data(), kMagic, 8) != 0) return set_why(why, "not a dsv4 state file"), std::nullopt;
  Reader r{b, 8, {}};
  const uint32_t version = r.get<uint32_t>("the header"), numerics = r.get<uint32_t>("the header");
  const uint64_t model = r.get<uint64_t>("the header");
  StateFileHeader h;
  h.n_tokens = r.get<uint64_t>("the header");
  h.tokens_hash = r.get<uint64_t>("the header");
  h.file_bytes = r.get<uint64_t>("the header");
  if (version != kVersion) return set_why(why, fmt::format("format version {}, this build reads {}", version, kVersion)), std::nullopt;
  if (model != key.model_id)
    return set_why(why, fmt::format("another model ({:016x}, this one is {:016x})", model, key.model_id)), std::nullopt;
  if (numerics != key.numerics)
    return set_why(why, fmt::format("other numerics options ({:#x}, these are {:#x})", numerics, key.numerics)), std::nullopt;
  return h;
}

std::optional<LoadedState> decode_state(std::span<const uint8_t> b, const Model& m, const StateFileKey& key,
                                        std::string* why, const std::vector<int32_t>* prefix) {
  auto h = parse_state_header(b, key, why);
  if (!h) return std::nullopt;
  if (h->file_bytes != b.size())
    return set_why(why, fmt::format("{} bytes, the header says {} (truncated or extended)", b.size(), h->file_bytes)),
           std::nullopt;
  uint64_t sum = 0;
  std::memcpy(&sum, b.data() + b.size() - 8, 8);
  if (fnv1a(kFnvBasis, b.data(), b.size() - 8) != sum) return set_why(why, "checksum mismatch (damaged)"), std::nullopt;
  Reader r{b.first(b.size() - 8), kStateHeaderBytes, {}};
  LoadedState out;
  if (h->n_tokens > (r.b.size() - r.at) / 4) return set_why(why, "truncated token list"), std::nullopt;
  out.tokens.resize(h->n_tokens);
  r.raw(out.tokens.data(), h->n_tokens * 4, "the tokens");
  if (tokens_hash(out.tokens) != h->tokens_hash) return set_why(why, "token hash mismatch"), std::nullopt;
  if (prefix && out.tokens != *prefix) return set_why(why, "another token prefix"), std::nullopt;
  const int64_t V = m.config().vocab_size;
  for (int32_t t : out.tokens)
    if (t < 0 || t >= V) return set_why(why, fmt::format("token id {} outside the vocabulary", t)), std::nullopt;
  out.state = m.new_sequence();
  SequenceState& st = out.state;
  st.pos = r.get<int64_t>("positions");
  st.mtp_pos = r.get<int64_t>("positions");
  st.dspark_pos = r.get<int64_t>("positions");
  if (r.ok() && st.pos != int64_t(h->n_tokens))
    return set_why(why, fmt::format("state at position {} for {} tokens", st.pos, h->n_tokens)), std::nullopt;
  if (r.ok() && (st.mtp_pos < 0 || st.mtp_pos > st.pos || st.dspark_pos < 0 || st.dspark_pos > st.pos))
    return set_why(why, "draft positions past the main model's"), std::nullopt;
  const int dI = m.config().index_head_dim;
  get_blocks(r, st.layers, dI, "the model") && get_blocks(r, st.mtp, dI, "the MTP block") &&
      get_blocks(r, st.dspark, dI, "the DSpark stages");
  if (r.ok() && r.at != r.b.size()) r.bad(fmt::format("{} bytes left over after the state", r.b.size() - r.at));
  if (!r.ok()) return set_why(why, r.err), std::nullopt;
  return out;
}

bool write_file_atomic(const std::string& path, std::span<const uint8_t> b, std::string* why) {
  const std::string tmp = fmt::format("{}.tmp{}", path, ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return set_why(why, fmt::format("cannot create {}: {}", tmp, std::strerror(errno))), false;
  size_t done = 0;
  while (done < b.size()) {
    const ssize_t n = ::write(fd, b.data() + done, b.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      set_why(why, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    done += size_t(n);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    set_why(why, fmt::format("cannot finish {}: {}", path, std::strerror(errno)));
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

std::optional<std::vector<uint8_t>> read_file_bytes(const std::string& path, size_t max_bytes, std::string* why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return set_why(why, fmt::format("cannot open {}: {}", path, std::strerror(errno))), std::nullopt;
  struct stat sb;
  if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || uint64_t(sb.st_size) > max_bytes) {
    ::close(fd);
    return set_why(why, fmt::format("{}: not a regular file of at most {} bytes", path, max_bytes)), std::nullopt;
  }
  std::vector<uint8_t> b(size_t(sb.st_size));
  size_t done = 0;
  while (done < b.size()) {
    const ssize_t n = ::read(fd, b.data() + done, b.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  ::close(fd);
  b.resize(done);  // a file that shrank underneath us is caught by the size in its header
  return b;
}

}  // namespace dsv4
