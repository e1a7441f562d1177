#include "runtime/disk_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

#include <fmt/format.h>

#include "core/error.h"
#include "core/hash.h"
#include "runtime/ram_budget.h"

namespace dsv4 {

namespace {

constexpr const char* kExt = ".state";
constexpr size_t kMaxQueued = 4;  // states waiting to be written; more are dropped, not waited for

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

struct FileInfo {
  std::string path;
  uint64_t bytes = 0;
  timespec mtime{};
};

std::vector<FileInfo> list_states(const std::string& dir) {
  std::vector<FileInfo> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (!ends_with(name, kExt)) continue;
    struct stat sb;
    const std::string p = dir + "/" + name;
    if (::stat(p.c_str(), &sb) == 0 && S_ISREG(sb.st_mode)) out.push_back({p, uint64_t(sb.st_size), sb.st_mtim});
  }
  ::closedir(d);
  return out;
}

}  // namespace

DiskCache::DiskCache(const Model& m, const std::string& dir, uint64_t max_bytes)
    : model_(m), key_(state_file_key(m)), dir_(fmt::format("{}/{:016x}", dir, key_.model_id)), max_bytes_(max_bytes) {
  if (!make_dirs(dir_)) fail("cannot create the cache directory {}", dir_);
  // Headers only: a file is read and checked in full when a prompt wants it.
  for (auto& f : list_states(dir_)) {
    uint8_t h[kStateHeaderBytes];
    FILE* fp = std::fopen(f.path.c_str(), "rb");
    if (!fp) continue;
    const size_t n = std::fread(h, 1, sizeof h, fp);
    std::fclose(fp);
    auto hd = parse_state_header(std::span<const uint8_t>(h, n), key_);
    if (!hd || path_of({hd->n_tokens, hd->tokens_hash}) != f.path) continue;  // other numerics, or a stray file
    index_[{hd->n_tokens, hd->tokens_hash}] = true;
    stats_.bytes += f.bytes;
  }
  stats_.files = index_.size();
  thread_ = std::thread([this] { writer(); });
}

DiskCache::~DiskCache() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::string DiskCache::path_of(const Key& k) const {
  uint64_t h = fnv1a(kFnvBasis, &key_.numerics, sizeof key_.numerics);
  h = fnv1a(h, &k.first, 8);
  h = fnv1a(h, &k.second, 8);
  return fmt::format("{}/{:016x}{}", dir_, h, kExt);
}

std::optional<LoadedState> DiskCache::lookup(const std::vector<int32_t>& prompt, size_t min_len, size_t max_len) {
  max_len = std::min(max_len, prompt.size());
  std::set<uint64_t> lens;
  {
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& [k, on_disk] : index_)
      if (on_disk && k.first > min_len && k.first <= max_len) lens.insert(k.first);
  }
  if (lens.empty()) return std::nullopt;
  // FNV-1a streams, so one pass gives the hash of every prefix.
  std::vector<Key> cands;
  uint64_t h = kFnvBasis;
  for (size_t n = 1; n <= max_len; ++n) {
    h = fnv1a(h, &prompt[n - 1], 4);
    if (lens.count(n)) cands.push_back({n, h});
  }
  for (auto it = cands.rbegin(); it != cands.rend(); ++it) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto f = index_.find(*it);
      if (f == index_.end() || !f->second) continue;
    }
    const std::string p = path_of(*it);
    const std::vector<int32_t> want(prompt.begin(), prompt.begin() + int64_t(it->first));
    std::string why;
    std::optional<LoadedState> got;
    if (auto b = read_file_bytes(p, size_t(max_bytes_) + 1, &why)) got = decode_state(*b, model_, key_, &why, &want);
    std::lock_guard<std::mutex> lk(mu_);
    if (got) {
      ::utimensat(AT_FDCWD, p.c_str(), nullptr, 0);  // recently used: evicted last
      ++stats_.hits;
      stats_.hit_tokens += it->first;
      return got;
    }
    // Never trusted again: the next prefill of this prefix writes it afresh.
    std::fprintf(stderr, "dsv4: ignoring cache file %s: %s\n", p.c_str(), why.c_str());
    ::unlink(p.c_str());
    index_.erase(*it);
    ++stats_.rejected;
  }
  return std::nullopt;
}

void DiskCache::put(const std::vector<int32_t>& tokens, const SequenceState& st) {
  if (tokens.empty() || st.marked() || st.pos != int64_t(tokens.size())) return;
  const Key k{tokens.size(), tokens_hash(tokens)};
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stop_ || index_.count(k) || queue_.size() >= kMaxQueued) return;
    index_[k] = false;
  }
  Job j{tokens, st};  // the copy, outside the lock
  std::lock_guard<std::mutex> lk(mu_);
  queue_.push_back(std::move(j));
  cv_.notify_all();
}

void DiskCache::flush() {
  std::unique_lock<std::mutex> lk(mu_);
  idle_.wait(lk, [&] { return queue_.empty() && !writing_; });
}

DiskCacheStats DiskCache::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stats_;
}

void DiskCache::writer() {
  for (;;) {
    Job j;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping, everything written
      j = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
    write(j);
    std::lock_guard<std::mutex> lk(mu_);
    writing_ = false;
    idle_.notify_all();
  }
  std::lock_guard<std::mutex> lk(mu_);
  idle_.notify_all();
}

void DiskCache::write(Job& j) {
  const Key k{j.tokens.size(), tokens_hash(j.tokens)};
  std::string why;
  bool ok = false;
  try {
    const auto b = encode_state(j.state, j.tokens, key_);
    ok = b.size() <= max_bytes_ && write_file_atomic(path_of(k), b, &why);
  } catch (const std::exception& e) {
    why = e.what();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (ok) {
      index_[k] = true;
      ++stats_.writes;
    } else {
      index_.erase(k);
      ++stats_.write_failures;
    }
  }
  if (!ok && !why.empty()) std::fprintf(stderr, "dsv4: cache write failed: %s\n", why.c_str());
  if (ok) evict();
}

void DiskCache::evict() {
  auto files = list_states(dir_);
  uint64_t total = 0;
  for (auto& f : files) total += f.bytes;
  std::sort(files.begin(), files.end(), [](const FileInfo& a, const FileInfo& b) {
    return a.mtime.tv_sec != b.mtime.tv_sec ? a.mtime.tv_sec < b.mtime.tv_sec : a.mtime.tv_nsec < b.mtime.tv_nsec;
  });
  size_t removed = 0;
  for (size_t i = 0; i < files.size() && total > max_bytes_; ++i)
    if (::unlink(files[i].path.c_str()) == 0) {
      total -= files[i].bytes;
      ++removed;
      files[i].path.clear();
    }
  std::lock_guard<std::mutex> lk(mu_);
  if (removed) {
    stats_.evictions += removed;
    // Forget what is gone: rebuild the index's view of the surviving paths.
    std::set<std::string> alive;
    for (auto& f : files)
      if (!f.path.empty()) alive.insert(f.path);
    std::erase_if(index_, [&](const auto& e) { return e.second && !alive.count(path_of(e.first)); });
  }
  stats_.bytes = total;
  stats_.files = size_t(std::count_if(index_.begin(), index_.end(), [](const auto& e) { return e.second; }));
}

}  // namespace dsv4
