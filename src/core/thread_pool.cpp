#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "core/arena.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dsv4 {

namespace {
void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}
// Spins until done() or about `budget` has passed; returns done().
template <class F>
bool spin_until(F done, std::chrono::microseconds budget = std::chrono::microseconds(200)) {
  const auto t_end = std::chrono::steady_clock::now() + budget;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= t_end) return done();
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::run(Job fn, size_t n, size_t min_chunk) {
  if (n == 0) return;
  size_t threads = size_t(size());
  size_t chunks = std::min(threads, (n + min_chunk - 1) / std::max<size_t>(min_chunk, 1));
  // A second caller (another thread, or a nested call from inside a job) runs its work inline
  // rather than waiting: outputs do not depend on how the range is split.
  std::unique_lock<std::mutex> busy(dispatch_mu_, std::try_to_lock);
  if (chunks <= 1 || workers_.empty() || !busy.owns_lock()) {
    fn(0, n);
    return;
  }
  auto run_chunks = [&] {
    for (;;) {
      size_t c = next_chunk_.fetch_add(1);
      if (c >= chunks) break;
      fn(n * c / chunks, n * (c + 1) / chunks);
    }
  };
  {
    std::lock_guard<std::mutex> lk(mu_);
    job_ = fn;
    job_n_ = n;
    job_chunks_ = chunks;
    next_chunk_ = 0;
    pending_ = workers_.size();
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  run_chunks();
  auto all_done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done)) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, all_done);
  }
  job_ = {};
}

void ThreadPool::worker(int) {
  // The first block of this thread's scratch now, not inside its first job.
  thread_arena().reserve(0);
  uint64_t seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    std::unique_lock<std::mutex> lk(mu_);
    cv_start_.wait(lk, [&] { return stop_ || generation_.load() != seen; });
    if (stop_) return;
    seen = generation_.load();
    const Job fn = job_;
    size_t n = job_n_, chunks = job_chunks_;
    lk.unlock();
    for (;;) {
      size_t c = next_chunk_.fetch_add(1);
      if (c >= chunks) break;
      fn(n * c / chunks, n * (c + 1) / chunks);
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> done(mu_);  // the caller may be between its check and its wait
      cv_done_.notify_one();
    }
  }
}

namespace {
std::unique_ptr<ThreadPool>& global_slot() {
  static std::unique_ptr<ThreadPool> p;
  return p;
}
}  // namespace

ThreadPool& ThreadPool::global() {
  auto& p = global_slot();
  if (!p) p = std::make_unique<ThreadPool>(0);
  return *p;
}

void ThreadPool::set_global_threads(int n) { global_slot() = std::make_unique<ThreadPool>(n); }

}  // namespace dsv4
