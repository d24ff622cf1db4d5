// libFuzzer target over the host's connection rules (framework/src/
// host_session.*): the input is what a peer writes, fed to a session in
// pseudo-random chunks, with a driver that answers some requests at once,
// holds others and answers them later in a shuffled order, and sometimes
// starts a drain. Control frames and "features" reach it through the
// seeds (tests/vectors/extensions/) and the dictionary.
//
// Checked: the window is never exceeded; every byte the session writes is
// a whole, decodable frame; every answer made is written exactly once and
// no control frame is answered (answers written == answers made); a
// cancelled handler is one that runs; and once everything is answered and
// written the session is idle. Streams: at most max_streams open, none in
// the window, credit within 2^32, a cancelled stream is not live, and each
// end is counted as an answer.
#include "host_session.hpp"

#include <boost/json/value.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

// The two functions the session takes from the library beyond the codec,
// as the library writes them (handlers.cpp, config.cpp), so the target
// links only code without sockets.
namespace comet {
encoded_response error_response(errc code, std::string_view message) {
  return {encode_error_response(code, message), code};
}
std::string endpoint::to_string() const { return ip + ":" + std::to_string(port); }
}  // namespace comet

namespace {

using comet::host_session;

#define FUZZ_CHECK(condition)                                                   \
  do {                                                                          \
    if (!(condition)) {                                                         \
      std::fprintf(stderr, "session_fuzzer: check failed at line %d: %s\n",     \
                   __LINE__, #condition);                                       \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

struct generator {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

struct fuzz_driver final : host_session::driver {
  explicit fuzz_driver(generator& g) : random(g) {}
  generator& random;
  host_session* session = nullptr;
  std::size_t window = 0;
  std::vector<host_session::handle> held;
  std::set<host_session::handle> running;
  std::size_t answers_made = 0;

  std::variant<comet::request_message, comet::encoded_response> prepare(
      const comet::frame_header& header, std::string_view content) override {
    if (header.auth_token == "wrong")
      return comet::error_response(comet::errc::unauthorized, "the auth-token is not valid");
    std::string why;
    auto r = comet::decode_request(content, why);
    if (!r) return comet::error_response(comet::errc::bad_request, why);
    return std::move(*r);
  }
  void run(host_session::handle h, comet::request_message& request,
           std::optional<std::uint64_t>, bool, std::string_view) override {
    FUZZ_CHECK(running.insert(h).second);
    FUZZ_CHECK(session->in_flight() <= window);
    if (random.next() % 3 == 0) return answer(h, request.value);
    held.push_back(h);
  }
  void cancel(host_session::handle h) override { FUZZ_CHECK(running.count(h) == 1); }
  void responded(host_session::handle, const comet::encoded_response&) override { ++answers_made; }

  // Streams: some refused, the others write items as credit allows and
  // finish at random; a cancelled one writes nothing more.
  std::size_t max_streams = 0;
  std::vector<host_session::handle> streams;
  std::optional<comet::encoded_response> admit_stream(const comet::request_message&, bool) override {
    if (random.next() % 4 == 0) return comet::error_response(comet::errc::no_handler, "none");
    return std::nullopt;
  }
  std::optional<std::uint64_t> run_stream(host_session::handle h, comet::request_message&, std::uint64_t,
                                          bool subscribe, std::string_view) override {
    FUZZ_CHECK(running.count(h) == 0);
    FUZZ_CHECK(std::find(streams.begin(), streams.end(), h) == streams.end());
    streams.push_back(h);
    FUZZ_CHECK(session->open_streams() <= max_streams);
    FUZZ_CHECK(session->in_flight() <= window);
    if (subscribe) return random.next() % 100;
    return std::nullopt;
  }
  void cancel_stream(host_session::handle h) override {
    FUZZ_CHECK(std::find(streams.begin(), streams.end(), h) != streams.end());
    FUZZ_CHECK(!session->stream_live(h));
  }
  void credited(host_session::handle h) override {
    FUZZ_CHECK(std::find(streams.begin(), streams.end(), h) != streams.end());
    FUZZ_CHECK(session->stream_credit(h) <= host_session::max_credit);
  }
  void stream_some(bool all) {
    for (std::size_t i = 0; i < streams.size();) {
      const auto h = streams[i];
      for (int n = 0; n < 8 && session->stream_writable(h) && random.next() % 3 != 0; ++n)
        session->stream_item(h, "{\"result\": 1}", random.next() % 2 ? std::optional<std::uint64_t>(n) : std::nullopt);
      if (all || random.next() % 4 == 0) {
        std::optional<comet::encoded_response> error;
        if (random.next() % 2) error = comet::error_response(comet::errc::handler_failed, "failed");
        session->stream_finished(h, error);
        streams[i] = streams.back();
        streams.pop_back();
        continue;
      }
      ++i;
    }
  }

  void answer(host_session::handle h, const boost::json::value& v) {
    FUZZ_CHECK(running.erase(h) == 1);
    session->answered(h, {comet::encode_response(v), std::nullopt});
  }
  void answer_some(bool all) {
    while (!held.empty() && (all || random.next() % 2 == 0)) {
      const std::size_t i = random.next() % held.size();
      const auto h = held[i];
      held[i] = held.back();
      held.pop_back();
      answer(h, nullptr);
    }
  }
};

// Takes what the session wants written, checking it is whole frames;
// returns how many of them were answers.
std::size_t take_written(host_session& session) {
  std::size_t answers = 0;
  for (;;) {
    const std::string bytes(session.prepare_write());
    if (bytes.empty()) return answers;
    session.commit_write();
    std::string_view rest = bytes;
    comet::frame_decoder d(1 << 20);
    while (!rest.empty()) {
      FUZZ_CHECK(d.decode(rest) == comet::frame_decoder::status::complete);
      // A stream's begin and items are not answers; its end is.
      if (d.header().kind == comet::frame_kind::message &&
          (d.header().stream == comet::stream_part::none || d.header().stream == comet::stream_part::end))
        ++answers;
      rest.remove_prefix(d.frame_size());
      d.reset();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::uint64_t seed = 14695981039346656037ull;
  for (unsigned char c : input) seed = (seed ^ c) * 1099511628211ull;
  generator random{seed};

  comet::host_session_limits limits;
  limits.max_content_length = static_cast<std::size_t>(16 + random.next() % 4096);
  limits.max_in_flight = static_cast<std::size_t>(1 + random.next() % 6);
  limits.max_in_flight_bytes = static_cast<std::size_t>(1 + random.next() % 512);
  limits.write_buffer_limit = static_cast<std::size_t>(64 + random.next() % 4096);
  const comet::endpoint peer{"127.0.0.1", 9};
  fuzz_driver driver(random);
  driver.window = limits.max_in_flight;
  limits.max_streams = static_cast<std::size_t>(1 + random.next() % 4);
  driver.max_streams = limits.max_streams;
  host_session session(limits, driver, peer);
  driver.session = &session;

  // Half the inputs begin as if a first request had announced every
  // feature, so that the stream frames of the seeds (stream_open.bin,
  // credit.bin, subscribe.bin...) and of mutations open streams.
  std::string buffered;
  if (random.next() % 2 == 0) {
    comet::frame_header first;
    first.keep_alive = true;
    first.request_id = 0;
    first.features = comet::feature::all;
    buffered = comet::encode_frame(first, comet::encode_request("hello", nullptr));
  }
  std::size_t offered = 0, answers_written = 0;
  while (offered < input.size() && session.reading()) {
    const std::size_t n = std::min<std::size_t>(1 + random.next() % 300, input.size() - offered);
    buffered.append(input.substr(offered, n));
    offered += n;
    if (session.wants_read() || random.next() % 4 == 0) {
      const std::size_t used = session.consume(buffered);
      FUZZ_CHECK(used <= buffered.size());
      buffered.erase(0, used);
    }
    FUZZ_CHECK(session.in_flight() <= limits.max_in_flight);
    driver.answer_some(false);
    driver.stream_some(false);
    if (random.next() % 16 == 0) session.begin_drain();
    if (random.next() % 2 == 0) answers_written += take_written(session);
  }
  driver.answer_some(true);
  driver.stream_some(true);
  answers_written += take_written(session);
  FUZZ_CHECK(session.open_streams() == 0);
  FUZZ_CHECK(driver.running.empty());
  FUZZ_CHECK(session.idle());
  FUZZ_CHECK(session.in_flight() == 0);
  FUZZ_CHECK(answers_written == driver.answers_made);
  return 0;
}
