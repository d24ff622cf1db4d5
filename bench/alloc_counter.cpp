#include "alloc_counter.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <new>

namespace comet_alloc {
namespace {

// One counter per cache line, a thread to each in turn: threads allocating
// side by side do not contend for one line, which would slow what is measured.
constexpr unsigned stripes = 16;
struct alignas(64) stripe {
  std::atomic<std::uint64_t> count{0};
};
stripe counters[stripes];
std::atomic<unsigned> next_stripe{0};

void count_one() noexcept {
  thread_local const unsigned mine = next_stripe.fetch_add(1, std::memory_order_relaxed) % stripes;
  counters[mine].count.fetch_add(1, std::memory_order_relaxed);
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
  std::uint64_t sum = 0;
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
