// What the docs' snippets use without declaring it: the names a reader
// supplies (a client called telegram, a config, an executor, a value...).
// Declared, never defined: the snippets are compiled, not linked or run.
#pragma once

#include <comet/comet.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/describe/class.hpp>

#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <string_view>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace comet_doc {

struct point {
  double x = 0, y = 0;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, y))

struct scan_request {
  int points = 0;
};
BOOST_DESCRIBE_STRUCT(scan_request, (), (points))
struct measurement {
  int index = 0;
  double x = 0;
};
BOOST_DESCRIBE_STRUCT(measurement, (), (index, x))

enum class severity { info, warning };
struct application_log {
  void write(severity, const std::string&);
};
struct logger {
  void write(std::string_view, std::string_view);
};

json::value handler(const std::string& action, const json::value& value);
json::value my_state();
asio::awaitable<void> my_other_work();

extern asio::any_io_executor executor_;
extern comet::config cfg_;
extern comet::client telegram_;
extern comet::host host_;
extern json::value value_;
extern int k_;
extern logger my_logger_;
extern application_log log_;

}  // namespace comet_doc

// Locals, so that a snippet's lambdas may capture them, and a snippet may
// declare its own of the same name in its inner block.
#define COMET_DOC_PRELUDE_LOCALS                                         \
  [[maybe_unused]] auto& executor = comet_doc::executor_;               \
  [[maybe_unused]] auto& ex = comet_doc::executor_;                     \
  [[maybe_unused]] auto& cfg = comet_doc::cfg_;                         \
  [[maybe_unused]] auto& telegram = comet_doc::telegram_;               \
  [[maybe_unused]] auto& client = comet_doc::telegram_;                 \
  [[maybe_unused]] auto& c = comet_doc::telegram_;                      \
  [[maybe_unused]] auto& host = comet_doc::host_;                       \
  [[maybe_unused]] auto& value = comet_doc::value_;                     \
  [[maybe_unused]] auto& entry = comet_doc::value_;                     \
  [[maybe_unused]] auto& k = comet_doc::k_;                             \
  [[maybe_unused]] auto& my_logger = comet_doc::my_logger_;             \
  [[maybe_unused]] auto& log = comet_doc::log_;
