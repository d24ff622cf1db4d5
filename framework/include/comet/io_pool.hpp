// A small thread pool for io_contexts: what a service's main (or a test)
// creates to give hosts and clients somewhere to run. Embedding programs that
// own their io_context do not need it.
//
// Two layouts: one io_context shared by every thread (the default), or one
// io_context per thread. With one thread per context, work on a connection
// needs no strand, which is cheaper; a host built on the pool spreads its
// connections over the contexts.
#pragma once

#include <comet/detail/asio_abi.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace comet {

namespace asio = boost::asio;

enum class io_pool_layout { shared_context, context_per_thread };

class io_pool {
 public:
  // Starts `threads` threads (at least one).
  explicit io_pool(std::size_t threads = 2,
                   io_pool_layout layout = io_pool_layout::shared_context);
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;
  // stop() and join().
  ~io_pool();

  // The first context's executor.
  asio::any_io_executor get_executor() noexcept { return contexts_.front()->get_executor(); }
  asio::io_context& context() noexcept { return *contexts_.front(); }
  // One executor per context, to spread work over.
  std::vector<asio::any_io_executor> executors() const;
  // True when each context is run by a single thread.
  bool single_threaded_contexts() const noexcept;
  std::size_t size() const noexcept { return threads_.size(); }

  // Lets run() return once the contexts have no more work (pending handlers
  // and connections still finish). join() then waits for that.
  void release() noexcept;
  // Stops the contexts at once: pending work is abandoned.
  void stop() noexcept;
  // Waits for every thread to end. Must not be called from a pool thread.
  void join();

  // True on one of this pool's threads.
  bool running_in_this_thread() const noexcept;

 private:
  using work_guard = asio::executor_work_guard<asio::io_context::executor_type>;
  // An io_context whose pending handlers can be destroyed apart from the
  // context itself (see ~io_pool).
  struct owned_context : asio::io_context {
    using asio::io_context::io_context;
    void drop_pending_handlers() { shutdown(); }
  };
  std::vector<std::unique_ptr<owned_context>> contexts_;
  std::vector<std::optional<work_guard>> work_;
  std::vector<std::thread> threads_;
};

}  // namespace comet
