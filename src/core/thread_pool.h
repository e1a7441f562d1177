#pragma once
// A fixed pool of workers with a cheap fork-join parallel_for. Work is split statically by index
// so every output element is computed by exactly one thread in a fixed order: results do not
// depend on the thread count. Decode issues hundreds of sub-millisecond jobs per token, so workers
// and the caller spin briefly before sleeping: a futex wake costs as much as a small job. A job is
// passed by reference, never copied into a std::function, so dispatching one allocates nothing.
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads = 0);  // 0 = hardware concurrency
  ~ThreadPool();
  int size() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n); the caller thread takes part. Safe to call
  // from several threads at once (one of them gets the workers, the others run inline).
  template <class F>
  void parallel_for(size_t n, F&& fn, size_t min_chunk = 1) {
    using Fn = std::remove_reference_t<F>;
    run({static_cast<const void*>(&fn),
         [](const void* f, size_t b, size_t e) { (*static_cast<Fn*>(const_cast<void*>(f)))(b, e); }},
        n, min_chunk);
  }

  static ThreadPool& global();
  static void set_global_threads(int n);

 private:
  struct Job {  // a borrowed callable: fn lives on the caller's stack for the whole parallel_for
    const void* fn = nullptr;
    void (*call)(const void*, size_t, size_t) = nullptr;
    void operator()(size_t b, size_t e) const { call(fn, b, e); }
  };
  void run(Job job, size_t n, size_t min_chunk);
  void worker(int idx);
  std::vector<std::thread> workers_;
  std::mutex mu_, dispatch_mu_;
  std::condition_variable cv_start_, cv_done_;
  Job job_;
  size_t job_n_ = 0, job_chunks_ = 0;
  std::atomic<size_t> next_chunk_{0};
  std::atomic<size_t> pending_{0};
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
};

}  // namespace dsv4
