// A small thread pool running one io_context: what a service's main (or a
// test) creates to give hosts and clients somewhere to run. Embedding
// programs that own their io_context do not need it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <optional>
#include <thread>
#include <vector>

namespace comet {

namespace asio = boost::asio;

class io_pool {
 public:
  // Starts `threads` threads (at least one) running the io_context.
  explicit io_pool(std::size_t threads = 2);
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;
  // stop() and join().
  ~io_pool();

  asio::any_io_executor get_executor() noexcept { return context_.get_executor(); }
  asio::io_context& context() noexcept { return context_; }
  std::size_t size() const noexcept { return threads_.size(); }

  // Lets run() return once the context has no more work (pending handlers
  // and connections still finish). join() then waits for that.
  void release() noexcept;
  // Stops the context at once: pending work is abandoned.
  void stop() noexcept;
  // Waits for every thread to end. Must not be called from a pool thread.
  void join();

  // True on one of this pool's threads.
  bool running_in_this_thread() const noexcept;

 private:
  asio::io_context context_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
};

}  // namespace comet
