#include <comet/io_pool.hpp>

#include <comet/log.hpp>

#include <exception>
#include <string>

namespace comet {
namespace {
thread_local const io_pool* current_pool = nullptr;
}

io_pool::io_pool(std::size_t threads, io_pool_layout layout) {
  const std::size_t count = threads == 0 ? 1 : threads;
  const bool per_thread = layout == io_pool_layout::context_per_thread;
  const std::size_t context_count = per_thread ? count : 1;
  for (std::size_t i = 0; i < context_count; ++i) {
    // A hint of 1 lets Asio skip locking it needs only for many threads.
    contexts_.push_back(std::make_unique<owned_context>(per_thread ? 1 : static_cast<int>(count)));
    work_.emplace_back(contexts_.back()->get_executor());
  }
  threads_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    asio::io_context& context = *contexts_[per_thread ? i : 0];
    threads_.emplace_back([this, &context] {
      current_pool = this;
      for (;;) {
        try {
          context.run();
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
  join();
  // Work on one context may hold objects of another (a connection spread to
  // context 1 holds its host, whose acceptor is on context 0). Every
  // context's pending handlers are destroyed first, while all the contexts
  // still exist; only then are the contexts themselves.
  for (auto& c : contexts_) c->drop_pending_handlers();
  contexts_.clear();
}

std::vector<asio::any_io_executor> io_pool::executors() const {
  std::vector<asio::any_io_executor> out;
  for (const auto& c : contexts_) out.push_back(c->get_executor());
  return out;
}

bool io_pool::single_threaded_contexts() const noexcept {
  return contexts_.size() == threads_.size();
}

void io_pool::release() noexcept {
  for (auto& w : work_) w.reset();
}

void io_pool::stop() noexcept {
  release();
  for (auto& c : contexts_) c->stop();
}

void io_pool::join() {
  for (auto& t : threads_) {
    if (!t.joinable()) continue;
    if (t.get_id() == std::this_thread::get_id())
      t.detach();  // the pool is being torn down from one of its own threads
    else
      t.join();
  }
}

bool io_pool::running_in_this_thread() const noexcept { return current_pool == this; }

}  // namespace comet
