#include <comet/io_pool.hpp>

#include <comet/log.hpp>

#include <exception>
#include <string>

namespace comet {
namespace {
thread_local const io_pool* current_pool = nullptr;
}

io_pool::io_pool(std::size_t threads)
    : context_(static_cast<int>(threads == 0 ? 1 : threads)), work_(context_.get_executor()) {
  const std::size_t count = threads == 0 ? 1 : threads;
  threads_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    threads_.emplace_back([this] {
      current_pool = this;
      for (;;) {
        try {
          context_.run();
          return;
        } catch (const std::exception& e) {
          // A handler let an exception escape: a bug, but one that must not
          // take the whole process down with std::terminate.
          log(log_level::error, std::string("uncaught exception on an io thread: ") + e.what());
        }
      }
    });
  }
}

io_pool::~io_pool() {
  stop();
  if (!running_in_this_thread()) join();
  else
    for (auto& t : threads_)
      if (t.joinable()) t.detach();
}

void io_pool::release() noexcept { work_.reset(); }

void io_pool::stop() noexcept {
  work_.reset();
  context_.stop();
}

void io_pool::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

bool io_pool::running_in_this_thread() const noexcept { return current_pool == this; }

}  // namespace comet

