// Heap allocations per frame on the canonical echo path (issue 21, item 3):
// once a connection is warm, answering a request allocates nothing on the
// heap, whether its handler is a plain function or a coroutine, the
// connection keep-alive one request at a time, pipelined, or multiplexed,
// with the metrics on or off: request values, and a handler's copies of
// them, live on the thread's request arena (framework/src/request_arena.hpp).
// This is a count, not a clock: this executable replaces operator new with
// bench/alloc_counter.cpp's counting one, and the test thread allocates
// nothing while it counts (its requests are encoded beforehand and its
// answers read into a fixed buffer).
#include "../bench/alloc_counter.hpp"
#include "support.hpp"

#include <sys/socket.h>

#include <mutex>
#include <vector>

using namespace comet;
using namespace comet::test;

namespace {

// Requests of the canonical form: 32-byte values, as comet-bench sends.
const json::value payload = json::string(std::string(32, 'x'));

// One connection driven from the test thread: `batch` is written whole,
// and `answer_bytes` of answers are read back into a buffer sized up front.
class driven_connection {
 public:
  driven_connection(const endpoint& at, std::string batch, std::size_t answer_bytes)
      : peer_(at), batch_(std::move(batch)), answers_(answer_bytes, '\0') {}

  // Writes the batch and reads its answers; false on a short read.
  bool exchange() {
    peer_.write(batch_);
    std::size_t got = 0;
    while (got < answers_.size()) {
      const ssize_t n = ::recv(peer_.socket().native_handle(), answers_.data() + got,
                               answers_.size() - got, MSG_WAITALL);
      if (n <= 0) return false;
      got += static_cast<std::size_t>(n);
    }
    return true;
  }
  const std::string& answers() const { return answers_; }

 private:
  raw_peer peer_;
  std::string batch_;
  std::string answers_;
};

// The size of the answer to `request`, learnt from one exchange.
std::size_t answer_size(const endpoint& at, const std::string& request) {
  raw_peer probe(at);
  probe.write(request);
  return probe.read_frame().size();
}

// Allocations the process makes over `rounds` exchanges on `c`, after
// `warmup` of them.
std::uint64_t allocations_over(driven_connection& c, int warmup, int rounds) {
  for (int i = 0; i < warmup; ++i)
    if (!c.exchange()) return ~std::uint64_t{0};
  const auto before = comet_alloc::allocations();
  for (int i = 0; i < rounds; ++i)
    if (!c.exchange()) return ~std::uint64_t{0};
  return comet_alloc::allocations() - before;
}

host_options loopback(bool metrics) {
  host_options o;
  o.listen = {"127.0.0.1", 0};
  o.metrics = metrics;
  return o;
}

void add_handlers(host& h) {
  h.on("echo", [](const std::string&, const json::value& v) { return v; });
  h.on("echo_co", [](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    co_return v;
  });
}


// Allocations over `rounds` batches of `depth` requests of `action`, each
// of `value`, on one warm keep-alive connection to `h`; per request.
double allocations_per_request(const endpoint& at, std::string_view action, const json::value& value,
                               bool tagged_ids, int depth) {
  const std::string one = tagged_ids ? tagged(100000, action, value) : request_frame(action, value, true);
  const std::size_t each = answer_size(at, one);
  REQUIRE(each > 0);
  std::string batch;
  for (int i = 0; i < depth; ++i)
    batch += tagged_ids ? tagged(100000 + i, action, value) : request_frame(action, value, true);
  driven_connection c(at, std::move(batch), each * static_cast<std::size_t>(depth));
  const int rounds = 4000 / depth;
  const auto counted = allocations_over(c, 2000 / depth + 20, rounds);
  REQUIRE(counted != ~std::uint64_t{0});
  return static_cast<double>(counted) / (rounds * depth);
}

}  // namespace

// A plain handler and a coroutine handler (its frames from Asio's
// per-thread recycling, its answer's string from the thread's spare
// strings): keep-alive one request at a time, pipelined (64 in one
// write), and multiplexed (64 tagged in one write), with the host's
// metrics on and off.
TEST_CASE("a warm connection answers plain and coroutine handlers without a heap allocation",
          "[allocations]") {
  const std::string action = GENERATE(std::string("echo"), std::string("echo_co"));
  const bool metrics = GENERATE(true, false);
  const bool tagged_ids = GENERATE(false, true);
  const int depth = GENERATE(1, 64);
  CAPTURE(action, metrics, tagged_ids, depth);
  io_pool pool(1);
  host h(pool, loopback(metrics));
  add_handlers(h);
  const endpoint at = h.start();

  // Values Boost.JSON keeps inline (a string of up to 14 bytes, a number).
  CHECK(allocations_per_request(at, action, json::string("0123456789"), tagged_ids, depth) == 0);
  CHECK(allocations_per_request(at, action, json::value(1234.5), tagged_ids, depth) == 0);
  // A 32-byte string, as comet-bench sends: read onto the thread's request
  // arena, and the handler's copy (`return v`) with it.
  CHECK(allocations_per_request(at, action, payload, tagged_ids, depth) == 0);
}

// Request values live on their thread's arena (request_arena.hpp), and a
// copy a handler makes shares it: a copy kept past its batch must stay
// intact while later batches are read, and the arena must start over once
// the last kept copy is gone, even when it goes on another thread.
TEST_CASE("a value a handler keeps outlives its batch intact, and the arena starts over once it is gone",
          "[allocations]") {
  std::mutex m;
  std::vector<json::value> kept;
  io_pool pool(1);
  host h(pool, loopback(true));
  add_handlers(h);
  h.on("keep", [&](const std::string&, const json::value& v) {
    const std::lock_guard lock(m);
    kept.push_back(v);  // a copy on the value's own resource
    return json::value("kept");
  });
  const endpoint at = h.start();

  auto text = [](char c, int i) { return std::string(40, c) + std::to_string(1000 + i); };
  raw_peer peer(at);
  for (int i = 0; i < 50; ++i) {
    const json::value keep_this(json::string(text('k', i)));
    peer.write(request_frame("keep", keep_this, true));
    REQUIRE(json::parse(split(peer.read_frame()).content).at("result") == "kept");
    // Batches after it, whose values the arena places after the kept ones.
    std::string batch;
    for (int j = 0; j < 20; ++j) batch += request_frame("echo", json::string(text('e', j)), true);
    peer.write(batch);
    for (int j = 0; j < 20; ++j)
      REQUIRE(json::parse(split(peer.read_frame()).content).at("result") == json::string(text('e', j)));
  }
  {
    const std::lock_guard lock(m);
    REQUIRE(kept.size() == 50);
    for (int i = 0; i < 50; ++i) CHECK(kept[static_cast<std::size_t>(i)] == json::string(text('k', i)));
    kept.clear();  // freed on this thread, not the host's
  }
  // Nothing of the arena is alive any more: it starts over, and a warm
  // connection allocates nothing again.
  CHECK(allocations_per_request(at, "echo", payload, false, 64) == 0);
}

// The counter itself counts: without this, a test of zero could pass by
// counting nothing.
TEST_CASE("the allocation counter counts the allocations of every thread", "[allocations]") {
  const auto before = comet_alloc::allocations();
  std::thread([] {
    auto* p = new std::string(100, 'x');
    delete p;
  }).join();
  auto* q = new int[4];
  delete[] q;
  CHECK(comet_alloc::allocations() - before >= 3);
}
