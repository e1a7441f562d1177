#pragma once
// A fixed pool of workers with a cheap fork-join parallel_for. Work is split statically by index
// so every output element is computed by exactly one thread in a fixed order: results do not
// depend on the thread count. Decode issues hundreds of sub-millisecond jobs per token, so workers
// and the caller spin briefly before sleeping: a futex wake costs as much as a small job.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads = 0);  // 0 = hardware concurrency
  ~ThreadPool();
  int size() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n); the caller thread takes part. Safe to call
  // from several threads at once (one of them gets the workers, the others run inline).
  void parallel_for(size_t n, const std::function<void(size_t, size_t)>& fn, size_t min_chunk = 1);

  static ThreadPool& global();
  static void set_global_threads(int n);

 private:
  void worker(int idx);
  std::vector<std::thread> workers_;
  std::mutex mu_, dispatch_mu_;
  std::condition_variable cv_start_, cv_done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t job_n_ = 0, job_chunks_ = 0;
  std::atomic<size_t> next_chunk_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
};

}  // namespace dsv4
