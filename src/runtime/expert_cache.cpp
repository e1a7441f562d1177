#include "runtime/expert_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

#include "core/error.h"

namespace dsv4 {

namespace {
constexpr uint64_t kAlign = 4096;  // O_DIRECT wants buffer, offset and length on the logical block size
uint64_t round_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
uint64_t scale_bytes(const Linear& l) { return l.scale ? uint64_t(l.scale_bytes()) : 0; }
uint64_t data_bytes(const Linear& l) { return uint64_t(l.weight_bytes() - l.scale_bytes()); }
uint8_t bit(ExpertPredictor p) { return uint8_t(1u << int(p)); }

// Reads [off, off+len) of fd into dst; false with errno set on failure, EIO for a file too short.
bool read_fully(int fd, uint8_t* dst, uint64_t len, uint64_t off) {
  while (len > 0) {
    ssize_t r = ::pread(fd, dst, len, off_t(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return false;
    if (r == 0) {
      errno = EIO;
      return false;
    }
    dst += r, len -= uint64_t(r), off += uint64_t(r);
  }
  return true;
}
}  // namespace

uint64_t ExpertCache::expert_file_bytes(const ExpertWeights& e) {
  return uint64_t(e.w1.weight_bytes() + e.w2.weight_bytes() + e.w3.weight_bytes());
}

// Where an expert's six tensors lie and how they are read: s.r and s.chunks (a chunk's fd is the index of
// its first range until the caller assigns descriptors); returns the slot bytes this layout needs.
uint64_t ExpertCache::layout(const Checkpoint& ck, const ExpertWeights& e, Source& s, const std::string* path[6]) {
  const Linear* lin[3] = {&e.w1, &e.w2, &e.w3};
  s.chunks.clear();
  for (int i = 0; i < 6; ++i) {
    const Linear& L = *lin[i / 2];
    const uint8_t* p = i % 2 ? L.scale : L.w;
    Range& r = s.r[i];
    r.len = i % 2 ? scale_bytes(L) : data_bytes(L);
    if (!p || r.len == 0) continue;
    auto loc = ck.locate(p);
    path[i] = loc.path;
    r.off = loc.offset;
  }
  // Shards keep an expert's six tensors next to each other (names sort together): one large read
  // instead of six (a gap of up to a block is read along).
  int order[6] = {0, 1, 2, 3, 4, 5};
  std::sort(order, order + 6, [&](int a, int b) {
    return std::pair(uintptr_t(path[a]), s.r[a].off) < std::pair(uintptr_t(path[b]), s.r[b].off);
  });
  uint64_t at = 0;
  for (int i : order) {
    Range& r = s.r[i];
    if (r.len == 0) continue;
    Chunk* c = s.chunks.empty() ? nullptr : &s.chunks.back();
    if (c && path[c->fd] == path[i] && r.off >= c->off + c->len && r.off - (c->off + c->len) <= kAlign) {
      c->len = r.off + r.len - c->off;
    } else {
      if (c) at += round_up(c->len) + kAlign;  // room for the aligned read around the bytes
      s.chunks.push_back({i, r.off, r.len, at});
    }
    r.chunk = int(s.chunks.size()) - 1;
  }
  if (!s.chunks.empty()) at += round_up(s.chunks.back().len) + kAlign;
  return at;
}

uint64_t ExpertCache::slot_bytes_for(const Checkpoint& ck, const ExpertWeights& e) {
  Source s;
  const std::string* path[6] = {};
  return layout(ck, e, s, path);
}

ExpertCache::ExpertCache(const Model& m, uint64_t capacity_bytes, int io_threads) {
  const ModelConfig& c = m.config();
  const ModelWeights& w = m.weights();
  n_experts_ = c.n_routed_experts;
  int layers = 0;
  while (moe_of(w, layers)) ++layers;
  sources_.resize(size_t(layers) * size_t(n_experts_));
  std::map<const std::string*, int> fd_of;
  for (int l = 0; l < layers; ++l)
    for (int e = 0; e < n_experts_; ++e) {
      Source& s = sources_[size_t(key(l, e))];
      s.mapped = &moe_of(w, l)->experts[size_t(e)];
      const std::string* path[6] = {};
      const uint64_t at = layout(m.checkpoint(), *s.mapped, s, path);
      for (int i = 0; i < 6; ++i) {
        if (!path[i]) continue;
        auto [it, fresh] = fd_of.try_emplace(path[i], int(fds_.size()));
        if (fresh) fds_.emplace_back();
        s.r[i].fd = it->second;
      }
      for (auto& c : s.chunks) c.fd = s.r[c.fd].fd;  // layout() numbered chunks by their first range
      slot_bytes_ = std::max(slot_bytes_, at);
    }
  if (sources_.empty() || slot_bytes_ == 0) fail("this checkpoint has no routed experts to stream");
  const uint64_t n_slots = capacity_bytes / slot_bytes_;
  const uint64_t need = uint64_t(std::max(2, c.n_activated_experts));
  if (n_slots < need)
    fail("the expert cache needs room for at least {} experts ({} bytes each, {} in all); {} bytes were given",
         need, slot_bytes_, need * slot_bytes_, capacity_bytes);
  // Half the slots may be pinned by one acquire, so the other half stays free for prefetching the next wave.
  pin_limit_ = size_t(std::max<uint64_t>(uint64_t(c.n_activated_experts), n_slots / 2));
  pin_limit_ = std::min<size_t>(pin_limit_, size_t(n_slots));
  slots_.resize(size_t(n_slots));
  slot_of_.assign(sources_.size(), -1);
  freq_.assign(sources_.size(), 0.0f);

  direct_ = true;
  for (auto& [path, i] : fd_of) {
    fds_[size_t(i)].buffered = ::open(path->c_str(), O_RDONLY | O_CLOEXEC);
    if (fds_[size_t(i)].buffered < 0) fail("cannot open {}: {}", *path, std::strerror(errno));
    fds_[size_t(i)].direct = ::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);  // tmpfs refuses
    if (fds_[size_t(i)].direct < 0) direct_ = false;
  }
  arena_bytes_ = size_t(n_slots * slot_bytes_);
  void* a = ::mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (a == MAP_FAILED) fail("cannot reserve {} bytes for the expert cache: {}", arena_bytes_, std::strerror(errno));
  arena_ = static_cast<uint8_t*>(a);
  for (size_t i = 0; i < slots_.size(); ++i) slots_[i].buf = arena_ + i * slot_bytes_;
  for (int i = 0; i < std::max(1, io_threads); ++i) io_.emplace_back([this] { io_loop(); });
}

ExpertCache::~ExpertCache() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    save_counts();
  }
  io_cv_.notify_all();
  for (auto& t : io_) t.join();
  for (auto& f : fds_) {
    if (f.direct >= 0) ::close(f.direct);
    if (f.buffered >= 0) ::close(f.buffered);
  }
  if (arena_) ::munmap(arena_, arena_bytes_);
}

int ExpertCache::key(int layer, int e) const {
  const size_t k = size_t(layer) * size_t(n_experts_) + size_t(e);
  if (layer < 0 || e < 0 || e >= n_experts_ || k >= sources_.size()) fail("no routed expert {} in layer {}", e, layer);
  return int(k);
}

void ExpertCache::begin_forward() {
  std::lock_guard<std::mutex> lk(mu_);
  if (++step_ % 256 == 0) save_counts();
}

namespace {
constexpr char kCountsMagic[8] = {'D', 'S', 'V', '4', 'R', 'T', 'E', '1'};
}

std::vector<float> ExpertCache::read_counts(const std::string& path, size_t n) {
  std::vector<float> v;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return v;
  char magic[8];
  uint64_t len = 0;
  if (std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, kCountsMagic, 8) == 0 && std::fread(&len, 8, 1, f) == 1 &&
      len == n) {
    v.resize(n);
    if (std::fread(v.data(), 4, n, f) != n) v.clear();
  }
  std::fclose(f);
  for (float& c : v)
    if (!std::isfinite(c) || c < 0) c = 0;
  return v;
}

void ExpertCache::persist_counts(const std::string& path) {
  std::lock_guard<std::mutex> lk(mu_);
  counts_path_ = path;
  const std::vector<float> v = read_counts(path, freq_.size());
  for (size_t i = 0; i < v.size(); ++i) freq_[i] += v[i];
}

void ExpertCache::save_counts() const {
  if (counts_path_.empty()) return;
  const std::string tmp = counts_path_ + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return;  // a read-only cache directory only costs the warm start
  const uint64_t n = freq_.size();
  bool ok = std::fwrite(kCountsMagic, 1, 8, f) == 8 && std::fwrite(&n, 8, 1, f) == 1 &&
            std::fwrite(freq_.data(), 4, n, f) == n;
  ok = std::fclose(f) == 0 && ok;
  if (ok) std::rename(tmp.c_str(), counts_path_.c_str());
  else std::remove(tmp.c_str());
}

int ExpertCache::victim(bool for_acquire) const {
  int best = -1;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.state == State::Free) return int(i);
    if (s.state != State::Ready || s.pins > 0) continue;
    if (!for_acquire && s.protect_step == step_ && s.named_by) continue;
    if (best < 0) {
      best = int(i);
      continue;
    }
    const Slot& b = slots_[size_t(best)];
    const float fs = freq_[size_t(s.key)], fb = freq_[size_t(b.key)];
    if (fs < fb || (fs == fb && s.last_use < b.last_use)) best = int(i);
  }
  return best;
}

void ExpertCache::start_load(int slot, int k, bool urgent) {
  Slot& s = slots_[size_t(slot)];
  if (s.key >= 0) slot_of_[size_t(s.key)] = -1;
  s.key = k;
  s.state = State::Loading;
  s.named_by = 0;
  s.error.clear();
  slot_of_[size_t(k)] = slot;
  if (urgent)
    queue_.push_front(slot);
  else
    queue_.push_back(slot);
  io_cv_.notify_one();
}

void ExpertCache::io_loop() {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    io_cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const int slot = queue_.front();
    queue_.pop_front();
    lk.unlock();
    load(slot);
    lk.lock();
    slots_[size_t(slot)].state = State::Ready;
    cv_.notify_all();
  }
}

// Runs on an I/O thread while the slot is Loading: nobody else touches its buffer or view.
void ExpertCache::load(int slot) {
  Slot& s = slots_[size_t(slot)];
  const Source& src = sources_[size_t(s.key)];
  std::vector<const uint8_t*> base(src.chunks.size());
  uint64_t bytes = 0;
  for (size_t i = 0; i < src.chunks.size() && s.error.empty(); ++i) {
    const Chunk& c = src.chunks[i];
    const Fd& fd = fds_[size_t(c.fd)];
    uint8_t* dst = s.buf + c.at;
    if (fd.direct >= 0) {
      // The aligned blocks around the bytes; the last block of the file may come back short.
      const uint64_t a0 = c.off / kAlign * kAlign, want = c.off + c.len - a0, n = round_up(want);
      uint64_t got = 0;
      while (got < want) {
        ssize_t k = ::pread(fd.direct, dst + got, n - got, off_t(a0 + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += uint64_t(k);
      }
      if (got >= want) {
        base[i] = dst + (c.off - a0);
        bytes += got;
        continue;
      }
    }
    if (!read_fully(fd.buffered, dst, c.len, c.off)) {
      s.error = fmt::format("reading expert bytes at offset {} of a checkpoint shard failed: {}", c.off,
                            std::strerror(errno));
      break;
    }
    // Buffered reads leave a second copy in the page cache, which a memory limit counts: drop it.
    ::posix_fadvise(fd.buffered, off_t(c.off), off_t(c.len), POSIX_FADV_DONTNEED);
    base[i] = dst;
    bytes += c.len;
  }
  const uint8_t* ptr[6] = {};
  for (int i = 0; i < 6; ++i)
    if (src.r[i].len && base[size_t(src.r[i].chunk)])
      ptr[i] = base[size_t(src.r[i].chunk)] + (src.r[i].off - src.chunks[size_t(src.r[i].chunk)].off);
  s.view = *src.mapped;
  Linear* lin[3] = {&s.view.w1, &s.view.w2, &s.view.w3};
  for (int i = 0; i < 6; ++i)
    if (src.r[i].len) (i % 2 ? lin[i / 2]->scale : lin[i / 2]->w) = ptr[i];
  std::lock_guard<std::mutex> lk(mu_);
  st_.reads++;
  st_.bytes_read += bytes;
}

void ExpertCache::note_use(Slot& s) {
  if (s.named_by & bit(ExpertPredictor::Hash)) st_.hash.used++;
  if (s.named_by & bit(ExpertPredictor::NextGate)) st_.next_gate.used++;
  if (s.named_by & bit(ExpertPredictor::Wave)) st_.wave.used++;
  s.named_by = 0;
  s.last_use = ++tick_;
}

void ExpertCache::bump(int k) {
  freq_[size_t(k)] += 1.0f;
  // Halving every so often makes the count a frequency of the recent past, so a topic change moves the cache.
  if (++acquires_since_decay_ >= std::max<uint64_t>(1024, 16 * slots_.size())) {
    for (float& f : freq_) f *= 0.5f;
    acquires_since_decay_ = 0;
  }
}

void ExpertCache::prefetch(int layer, const int32_t* experts, size_t n, ExpertPredictor who) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& pred = who == ExpertPredictor::Hash ? st_.hash : who == ExpertPredictor::NextGate ? st_.next_gate : st_.wave;
  for (size_t i = 0; i < n; ++i) {
    const int k = key(layer, experts[i]);
    int s = slot_of_[size_t(k)];
    if (s < 0) {
      s = victim(false);
      if (s < 0) return;  // every slot is pinned or holds an unused prefetch: the rest would evict them
      start_load(s, k, false);
    }
    Slot& sl = slots_[size_t(s)];
    if (!(sl.named_by & bit(who))) pred.named++;
    sl.named_by |= bit(who);
    sl.protect_step = step_;
  }
}

void ExpertCache::acquire(int layer, const int32_t* experts, size_t n, const ExpertWeights** views) {
  if (n > pin_limit_) fail("acquire of {} experts exceeds the cache's limit of {}", n, pin_limit_);
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<int> keys(n);
  for (size_t i = 0; i < n; ++i) {
    const int k = keys[i] = key(layer, experts[i]);
    bump(k);
    st_.acquired++;
    int s = slot_of_[size_t(k)];
    if (s >= 0) (slots_[size_t(s)].state == State::Ready ? st_.ready : st_.in_flight)++;
    // Unpinned slots outnumber what one acquire pins, so a victim appears once their reads finish.
    while (s < 0) {
      const int v = victim(true);
      if (v >= 0) {
        start_load(v, k, true);
        s = v;
      } else {
        cv_.wait(lk);
        s = slot_of_[size_t(k)];
      }
    }
    slots_[size_t(s)].pins++;
  }
  cv_.wait(lk, [&] {
    for (int k : keys)
      if (slots_[size_t(slot_of_[size_t(k)])].state != State::Ready) return false;
    return true;
  });
  std::string err;
  for (size_t i = 0; i < n; ++i) {
    Slot& s = slots_[size_t(slot_of_[size_t(keys[i])])];
    if (!s.error.empty()) err = s.error;
    note_use(s);
    views[i] = &s.view;
  }
  if (!err.empty()) {
    for (int k : keys) {
      Slot& s = slots_[size_t(slot_of_[size_t(k)])];
      s.pins--;
      if (!s.error.empty() && s.pins == 0) {
        slot_of_[size_t(k)] = -1;
        s.key = -1;
        s.state = State::Free;
      }
    }
    cv_.notify_all();
    fail("{}", err);
  }
}

void ExpertCache::release(int layer, const int32_t* experts, size_t n) {
  std::lock_guard<std::mutex> lk(mu_);
  for (size_t i = 0; i < n; ++i) {
    const int s = slot_of_[size_t(key(layer, experts[i]))];
    if (s >= 0 && slots_[size_t(s)].pins > 0) slots_[size_t(s)].pins--;
  }
  cv_.notify_all();
}

ExpertCacheStats ExpertCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

std::vector<float> ExpertCache::routing_counts() const {
  std::lock_guard<std::mutex> lk(mu_);
  return freq_;
}


void ExpertCache::warm(const std::function<void(size_t, size_t)>& progress) {
  std::unique_lock<std::mutex> lk(mu_);
  std::vector<int> order;
  for (size_t k = 0; k < freq_.size(); ++k)
    if (freq_[k] > 0 && slot_of_[k] < 0) order.push_back(int(k));
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return freq_[size_t(a)] > freq_[size_t(b)]; });
  order.resize(std::min(order.size(), slots_.size()));
  std::vector<int> started;
  for (int k : order) {
    const int v = victim(true);
    if (v < 0) break;
    start_load(v, k, false);
    slots_[size_t(v)].last_use = ++tick_;
    started.push_back(k);
  }
  for (;;) {
    size_t done = 0;
    for (int k : started)
      if (slot_of_[size_t(k)] < 0 || slots_[size_t(slot_of_[size_t(k)])].state != State::Loading) ++done;
    if (progress) {
      lk.unlock();
      progress(done, started.size());
      lk.lock();
    }
    if (done == started.size()) return;
    cv_.wait_for(lk, std::chrono::milliseconds(200));
  }
}

}  // namespace dsv4
