// Process-wide thread pool (see thread_pool.hpp for why it is not OpenMP).
//
// Jobs wait in a FIFO queue. A job is its task range with an atomic cursor:
// the submitting thread and any worker that picks the job claim task indices
// with fetch_add until the range is exhausted. The submitter then waits on a
// condition variable until every claimed task has finished and no worker
// still refers to the job (it lives on the submitter's stack).
#include "thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <stdexcept>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#elif defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace kmr {
namespace cpu {
namespace {

constexpr int MAX_THREADS = 1024;

// Leading positive integer of an environment variable (OMP_NUM_THREADS may be "8,2"), else 0.
int env_threads(const char* name) {
  const char* s = std::getenv(name);
  if (!s) return 0;
  long n = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    n = n * 10 + (*s - '0');
    if (n > MAX_THREADS) return MAX_THREADS;
  }
  return int(n);
}

int default_threads() {
  if (int n = env_threads("KMR_NUM_THREADS")) return n;
  if (int n = env_threads("OMP_NUM_THREADS")) return n;
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return std::min(n, MAX_THREADS);
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? std::min(int(n), MAX_THREADS) : 1;
}

std::atomic<int> g_requested{0};  // set_num_threads value, 0 = default
thread_local int t_depth = 0;     // > 0 while this thread runs a task

class Pool {
 public:
  using TaskFn = void (*)(void*, int64_t);

  // Threads including the caller; workers are size - 1.
  void resize(int size) {
    const int nworkers = std::max(size, 1) - 1;
    std::lock_guard<std::mutex> resize_lock(resize_m_);
    std::vector<std::thread> leaving;
    {
      std::lock_guard<std::mutex> lk(m_);
      if (nworkers == target_) return;
      target_ = nworkers;
      while (int(workers_.size()) > nworkers) {
        leaving.push_back(std::move(workers_.back()));
        workers_.pop_back();
      }
    }
    work_cv_.notify_all();
    for (auto& t : leaving) t.join();  // each finishes the job it is in first
    try {
      while (int(workers_.size()) < nworkers) {
        const int id = int(workers_.size());
        workers_.emplace_back([this, id] { worker_main(id); });
      }
    } catch (...) {  // no more threads: go on with those we have (the caller always works)
      std::lock_guard<std::mutex> lk(m_);
      target_ = int(workers_.size());
    }
  }

  void run(int64_t ntasks, TaskFn task, void* ctx) {
    Job job;
    job.n = ntasks;
    job.task = task;
    job.ctx = ctx;
    int nworkers;
    {
      std::lock_guard<std::mutex> lk(m_);
      queue_.push_back(&job);
      nworkers = target_;
    }
    if (ntasks - 1 >= nworkers) {
      work_cv_.notify_all();
    } else {
      for (int64_t w = 0; w < ntasks - 1; ++w) work_cv_.notify_one();
    }
    const int64_t done = execute(&job);
    std::unique_lock<std::mutex> lk(m_);
    unqueue(&job);
    job.finished += done;
    job.done_cv.wait(lk, [&] { return job.finished == job.n && job.refs == 0; });
    lk.unlock();
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  struct Job {
    int64_t n = 0;
    TaskFn task = nullptr;
    void* ctx = nullptr;
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
    // Guarded by Pool::m_:
    int64_t finished = 0;  // tasks run (or skipped after a failure)
    int refs = 0;          // workers that hold a pointer to the job
    std::exception_ptr error;
    std::condition_variable done_cv;
  };

  // Claims and runs tasks of job until none is left; returns how many it ran.
  int64_t execute(Job* job) {
    int64_t count = 0;
    ++t_depth;
    for (;;) {
      const int64_t t = job->next.fetch_add(1, std::memory_order_relaxed);
      if (t >= job->n) break;
      if (!job->failed.load(std::memory_order_relaxed)) {
        try {
          job->task(job->ctx, t);
        } catch (...) {
          std::lock_guard<std::mutex> lk(m_);
          if (!job->error) job->error = std::current_exception();
          job->failed.store(true);
        }
      }
      ++count;
    }
    --t_depth;
    return count;
  }

  // Removes an exhausted job from the queue (under m_).
  void unqueue(Job* job) {
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) queue_.erase(it);
  }

  void worker_main(int id) {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      work_cv_.wait(lk, [&] { return id >= target_ || !queue_.empty(); });
      if (id >= target_) return;
      Job* job = queue_.front();
      ++job->refs;
      lk.unlock();
      const int64_t done = execute(job);
      lk.lock();
      unqueue(job);
      job->finished += done;
      // Notified under m_: the submitter cannot return (and free job) before we let go of m_.
      if (--job->refs == 0 && job->finished == job->n) job->done_cv.notify_all();
    }
  }

  std::mutex resize_m_;  // serialises resize()
  std::mutex m_;         // queue_, target_, Job's guarded fields
  std::condition_variable work_cv_;
  std::deque<Job*> queue_;
  int target_ = 0;                    // workers wanted; a worker with id >= target_ leaves
  std::vector<std::thread> workers_;  // touched only under resize_m_
};

// The pool is created on first use and never destroyed: workers blocked on a
// condition variable at exit are harmless, while destroying it during static
// destruction could race with late users. After fork() the child starts a new
// pool (the parent's workers do not exist there); the old one is leaked.
std::mutex g_pool_m;
Pool* g_pool = nullptr;
bool g_atfork_done = false;

#if defined(__unix__) || defined(__APPLE__)
void atfork_prepare() { g_pool_m.lock(); }
void atfork_parent() { g_pool_m.unlock(); }
void atfork_child() {
  g_pool = nullptr;
  g_pool_m.unlock();
}
#endif

Pool& current_pool() {
  std::lock_guard<std::mutex> lk(g_pool_m);
  if (!g_atfork_done) {
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
#endif
    g_atfork_done = true;
  }
  if (!g_pool) g_pool = new Pool();
  return *g_pool;
}

char g_handle;  // what default_pool() returns; parallel_for maps it to the current pool

}  // namespace

int num_threads() {
  const int n = g_requested.load();
  return n > 0 ? std::min(n, MAX_THREADS) : default_threads();
}

void set_num_threads(int n) { g_requested.store(n > 0 ? n : 0); }

void* default_pool() { return &g_handle; }

void parallel_for(void* /*pool: only one exists*/, int64_t ntasks, void (*task)(void*, int64_t), void* ctx) {
  if (ntasks <= 0) return;
  const int nthreads = t_depth > 0 ? 1 : num_threads();
  if (ntasks == 1 || nthreads <= 1) {
    ++t_depth;
    struct Leave {
      ~Leave() { --t_depth; }
    } leave;
    for (int64_t t = 0; t < ntasks; ++t) task(ctx, t);
    return;
  }
  Pool& pool = current_pool();
  pool.resize(nthreads);
  pool.run(ntasks, task, ctx);
}

namespace {
struct Thunk {
  void (*fn)(void*);
  void* ctx;
  std::exception_ptr error;
};
void* thunk_main(void* p) {
  Thunk* t = static_cast<Thunk*>(p);
  try {
    t->fn(t->ctx);
  } catch (...) {
    t->error = std::current_exception();
  }
  return nullptr;
}
#if defined(__unix__) || defined(__APPLE__)
bool spawn(std::size_t stack_bytes, Thunk* t, pthread_t* id) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  const bool ok = pthread_attr_setstacksize(&attr, stack_bytes) == 0 && pthread_create(id, &attr, thunk_main, t) == 0;
  pthread_attr_destroy(&attr);
  return ok;
}
#endif
struct BigJob {
  int64_t n;
  void (*task)(void*, int64_t);
  void* ctx;
  std::atomic<int64_t> next{0};
  std::atomic<bool> stop{false};
};
void big_worker(void* p) {
  BigJob* j = static_cast<BigJob*>(p);
  ++t_depth;  // nested parallel_for calls run inline
  struct Leave {
    ~Leave() { --t_depth; }
  } leave;
  for (int64_t t; !j->stop.load() && (t = j->next.fetch_add(1)) < j->n;) {
    try {
      j->task(j->ctx, t);
    } catch (...) {
      j->stop.store(true);
      throw;
    }
  }
}
}  // namespace

void run_with_stack(std::size_t stack_bytes, void (*fn)(void*), void* ctx) {
  Thunk t{fn, ctx, nullptr};
#if defined(__unix__) || defined(__APPLE__)
  pthread_t id;
  if (!spawn(stack_bytes, &t, &id))
    throw std::runtime_error("kmr: cannot create a thread with " + std::to_string(stack_bytes >> 20) +
                             " MB of stack for this formula's large dimensions");
  pthread_join(id, nullptr);
#else
  thunk_main(&t);
#endif
  if (t.error) std::rethrow_exception(t.error);
}

void big_stack_parallel_for(void* pool, int64_t ntasks, void (*task)(void*, int64_t), void* ctx) {
  if (ntasks <= 0) return;
  const BigStack* cfg = static_cast<const BigStack*>(pool);
  BigJob job;
  job.n = ntasks;
  job.task = task;
  job.ctx = ctx;
  const int64_t extra = std::min<int64_t>(ntasks, t_depth > 0 ? 1 : cfg->threads) - 1;
  std::vector<Thunk> thunks(std::size_t(extra > 0 ? extra : 0), Thunk{big_worker, &job, nullptr});
#if defined(__unix__) || defined(__APPLE__)
  std::vector<pthread_t> ids;
  for (auto& th : thunks) {
    pthread_t id;
    if (!spawn(cfg->stack_bytes, &th, &id)) break;  // fewer threads: the caller does the rest
    ids.push_back(id);
  }
#endif
  Thunk self{big_worker, &job, nullptr};
  thunk_main(&self);
#if defined(__unix__) || defined(__APPLE__)
  for (pthread_t id : ids) pthread_join(id, nullptr);
#endif
  if (self.error) std::rethrow_exception(self.error);
  for (auto& th : thunks)
    if (th.error) std::rethrow_exception(th.error);
}

}  // namespace cpu
}  // namespace kmr
