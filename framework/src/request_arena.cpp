#include "request_arena.hpp"

#include <boost/json/memory_resource.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace comet::detail {
namespace {

namespace json = boost::json;

class request_arena final : public json::memory_resource {
 public:
  static constexpr std::size_t block_size = 16 * 1024;

  void start_over_if_unused() noexcept {
    if (live_.load(std::memory_order_acquire) == 0) used_ = 0;
  }
  // The thread that bumps through the block: from now on, this one.
  void adopt() noexcept { owner_.store(std::this_thread::get_id(), std::memory_order_relaxed); }
  // Its thread ended: no thread bumps until another adopts it.
  void orphan() noexcept { owner_.store(std::thread::id(), std::memory_order_relaxed); }

 private:
  void* do_allocate(std::size_t n, std::size_t align) override {
    if (owner_.load(std::memory_order_relaxed) == std::this_thread::get_id()) {
      const std::size_t start = (used_ + align - 1) & ~(align - 1);
      if (start <= block_size && n <= block_size - start) {
        used_ = start + n;
        live_.fetch_add(1, std::memory_order_relaxed);
        return block_ + start;
      }
    }
    return ::operator new(n, std::align_val_t(align));
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    const auto* byte = static_cast<const unsigned char*>(p);
    if (byte >= block_ && byte < block_ + block_size) {
      // The last one gone, on the owner's thread: start over at once (a
      // batch whose handlers finish after it was read frees its values
      // between batches).
      if (live_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
          owner_.load(std::memory_order_relaxed) == std::this_thread::get_id())
        used_ = 0;
      return;
    }
    ::operator delete(p, n, std::align_val_t(align));
  }
  bool do_is_equal(const json::memory_resource& other) const noexcept override {
    return this == &other;
  }

  alignas(std::max_align_t) unsigned char block_[block_size];
  std::size_t used_ = 0;                    // its owner's only
  std::atomic<std::size_t> live_{0};        // allocations from the block alive
  std::atomic<std::thread::id> owner_{};
};

// Arenas are never freed: a value may outlive its thread, and the values
// hold their arena by plain pointer. A thread that ends leaves its arena
// here for the next thread to start.
struct spare_arenas {
  std::mutex mutex;
  std::vector<request_arena*> arenas;
};
spare_arenas& spares() {
  static auto* kept = new spare_arenas;  // reachable to the end: not a leak
  return *kept;
}

struct thread_arena {
  thread_arena() {
    {
      auto& s = spares();
      std::lock_guard lock(s.mutex);
      if (!s.arenas.empty()) {
        arena = s.arenas.back();
        s.arenas.pop_back();
      }
    }
    if (!arena) arena = new request_arena;
    arena->adopt();
    storage = json::storage_ptr(arena);
  }
  ~thread_arena() {
    arena->orphan();
    auto& s = spares();
    std::lock_guard lock(s.mutex);
    try {
      s.arenas.push_back(arena);
    } catch (...) {  // no room to keep it: it stays where values may reach it
    }
  }
  thread_arena(const thread_arena&) = delete;
  thread_arena& operator=(const thread_arena&) = delete;

  request_arena* arena = nullptr;
  json::storage_ptr storage;
};

thread_arena& this_thread_arena() {
  thread_local thread_arena mine;
  return mine;
}

}  // namespace

const json::storage_ptr& request_storage() { return this_thread_arena().storage; }

void end_request_batch() noexcept { this_thread_arena().arena->start_over_if_unused(); }

}  // namespace comet::detail
