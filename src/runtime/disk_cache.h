#pragma once
// The disk tier of the prefix cache (architecture.md §5.4): exact sequence states after token
// prefixes, one file each under DIR/<model identity>/, found again after a restart. Files are written
// by a background thread (the scheduler only copies the state), capped in total size with the least
// recently used (by mtime) evicted first. A file that fails any check when loaded is deleted and
// treated as a miss: the prefill simply runs and writes it again.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "runtime/state_file.h"

namespace dsv4 {

struct DiskCacheStats {
  uint64_t hits = 0, hit_tokens = 0, rejected = 0, writes = 0, write_failures = 0, evictions = 0, files = 0;
  uint64_t bytes = 0;
};

class DiskCache {
 public:
  // Creates the folder and indexes the headers of the files already there; throws if it cannot.
  DiskCache(const Model& m, const std::string& dir, uint64_t max_bytes);
  ~DiskCache();  // writes what is queued, then stops
  DiskCache(const DiskCache&) = delete;
  DiskCache& operator=(const DiskCache&) = delete;

  // The longest cached prefix of `prompt` with more than min_len and at most max_len tokens.
  std::optional<LoadedState> lookup(const std::vector<int32_t>& prompt, size_t min_len, size_t max_len);
  // Queues a copy of st (after tokens) for writing; skipped when already on disk or while the queue is full.
  void put(const std::vector<int32_t>& tokens, const SequenceState& st);
  void flush();  // waits until the queue is written (tests, shutdown)
  DiskCacheStats stats() const;
  const std::string& dir() const { return dir_; }

 private:
  struct Job {
    std::vector<int32_t> tokens;
    SequenceState state;
  };
  using Key = std::pair<uint64_t, uint64_t>;  // token count, token hash
  std::string path_of(const Key& k) const;
  void writer();
  void write(Job& j);
  void evict();

  const Model& model_;
  StateFileKey key_;
  std::string dir_;
  uint64_t max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<Job> queue_;
  bool writing_ = false, stop_ = false;
  std::map<Key, bool> index_;  // files on disk (or being written: false)
  DiskCacheStats stats_;
  std::thread thread_;
};

}  // namespace dsv4
