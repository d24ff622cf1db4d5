#include "context_shutdown.hpp"

#include <boost/asio/execution_context.hpp>

#include <algorithm>
#include <mutex>
#include <vector>

namespace comet::detail {
namespace {

class shutdown_hooks final : public boost::asio::execution_context::service {
 public:
  static inline boost::asio::execution_context::id id;

  explicit shutdown_hooks(boost::asio::execution_context& context) : service(context) {}

  void add(std::weak_ptr<context_shutdown_hook> hook) {
    std::lock_guard lock(mutex_);
    // Entries of hooks already gone are dropped once they could be half of
    // the list: the list stays within twice the live hooks.
    if (hooks_.size() >= 2 * prune_at_) {
      std::erase_if(hooks_, [](const auto& h) { return h.expired(); });
      prune_at_ = std::max<std::size_t>(hooks_.size(), 8);
    }
    hooks_.push_back(std::move(hook));
  }

 private:
  void shutdown() override {
    // A hook may add another (a pool made as a client goes): run until
    // none is left.
    for (;;) {
      std::vector<std::weak_ptr<context_shutdown_hook>> due;
      {
        std::lock_guard lock(mutex_);
        due.swap(hooks_);
      }
      if (due.empty()) return;
      for (const auto& weak : due)
        if (auto hook = weak.lock()) hook->context_shutting_down();
    }
  }

  std::mutex mutex_;
  std::vector<std::weak_ptr<context_shutdown_hook>> hooks_;
  std::size_t prune_at_ = 8;
};

}  // namespace

void call_at_shutdown(boost::asio::execution_context& context,
                      std::weak_ptr<context_shutdown_hook> hook) {
  boost::asio::use_service<shutdown_hooks>(context).add(std::move(hook));
}

}  // namespace comet::detail
