// Internal: work to do when an execution context shuts down (an
// io_context's destructor or shutdown(), io_pool's teardown), while its
// services still exist. Asio destroys the operations its own services hold
// then; a coroutine parked outside them (a send waiting for its answer, its
// handler kept by its request) would otherwise hold itself and everything it
// refers to forever.
#pragma once

#include <memory>

namespace boost::asio {
class execution_context;
}

namespace comet::detail {

class context_shutdown_hook {
 public:
  // On the thread shutting the context down, no handler of it running.
  virtual void context_shutting_down() noexcept = 0;

 protected:
  ~context_shutdown_hook() = default;
};

// Calls `hook` when `context` shuts down, if it is still alive then. From
// any thread; an expired hook costs nothing but its entry.
void call_at_shutdown(boost::asio::execution_context& context,
                      std::weak_ptr<context_shutdown_hook> hook);

}  // namespace comet::detail
