#include "alloc_counter.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

namespace comet_alloc {
namespace {

// A counter per thread, each on its own cache line, which only its thread
// writes: counting is a load and a store, with no locked instruction or
// shared line to slow what is measured. Threads past the slots share one
// counter, counted with an atomic add.
constexpr unsigned slots = 512;
struct alignas(64) slot {
  std::atomic<std::uint64_t> count{0};
};
slot counters[slots];
slot shared;
std::atomic<unsigned> next_slot{0};

void count_one() noexcept {
  thread_local slot* const mine = [] {
    const unsigned i = next_slot.fetch_add(1, std::memory_order_relaxed);
    return i < slots ? &counters[i] : nullptr;
  }();
  if (mine)
    mine->count.store(mine->count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  else
    shared.count.fetch_add(1, std::memory_order_relaxed);
}

void* allocate(std::size_t size) {
  count_one();
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

void* allocate(std::size_t size, std::align_val_t align) {
  count_one();
  const auto alignment = std::max(static_cast<std::size_t>(align), sizeof(void*));
  void* p = nullptr;
  if (::posix_memalign(&p, alignment, size == 0 ? 1 : size) == 0) return p;
  throw std::bad_alloc();
}

}  // namespace

std::uint64_t allocations() noexcept {
  std::uint64_t sum = shared.count.load(std::memory_order_relaxed);
  for (const auto& s : counters) sum += s.count.load(std::memory_order_relaxed);
  return sum;
}

}  // namespace comet_alloc

// The replaceable forms ([new.delete]): every one of them, so that no
// allocation escapes the count and every delete matches its new.
void* operator new(std::size_t n) { return comet_alloc::allocate(n); }
void* operator new[](std::size_t n) { return comet_alloc::allocate(n); }
void* operator new(std::size_t n, std::align_val_t a) { return comet_alloc::allocate(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return comet_alloc::allocate(n, a); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return comet_alloc::allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return comet_alloc::allocate(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return comet_alloc::allocate(n, a);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  try {
    return comet_alloc::allocate(n, a);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
