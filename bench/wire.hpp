// The protocol as comet-bench speaks it, written independently of the
// framework's codec so that neither the baseline server nor the raw load
// generator inherits the speed (or the bugs) of the code under test.
//
// A frame is a 2-byte big-endian header length, a JSON header, and
// content-length bytes of JSON content (docs/protocol.md). Headers are
// written the way COMET writes them (", " and ": " separators).
#pragma once

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace comet_bench {

inline constexpr std::size_t max_content = 16 * 1024 * 1024;

// The echo payload: `size` printable bytes that need no JSON escaping.
std::string make_payload(std::size_t size);

// {"action": "echo", "value": "<payload>"}
std::string echo_request_content(std::string_view payload);
// {"result": "<payload>"}: the exact answer the baseline and comet write.
std::string echo_response_content(std::string_view payload);

// Appends a whole frame with a COMET-style header.
void append_frame(std::string& out, std::string_view content, bool keep_alive,
                  std::optional<std::uint64_t> request_id);

// What a frame header says, as far as the benchmark cares.
struct frame_info {
  std::size_t content_length = 0;
  bool keep_alive = false;
  std::optional<std::uint64_t> request_id;
  bool json = true;  // content-type is text/json
};

// Parses a JSON header with Boost.JSON into reused storage (no heap
// allocation per header once warm). Returns nullopt for anything that is not
// a header object with a valid content-length.
class header_parser {
 public:
  header_parser();
  std::optional<frame_info> parse(std::string_view json_text);

 private:
  unsigned char temp_[512];
  unsigned char arena_[2048];
  boost::json::parser parser_;
};

// Splits a byte stream into frames. `next` looks at buffered bytes starting
// at a frame boundary.
struct frame_view {
  enum class status { need_more, complete, malformed } state = status::need_more;
  frame_info info;
  std::string_view content;
  std::size_t size = 0;    // whole frame, when complete
  std::size_t needed = 2;  // bytes the frame needs in all, when known
};

// For the load generator: remembers the last header's bytes so the same
// header (every untagged echo answer has the same one) is parsed once.
class response_splitter {
 public:
  frame_view next(std::string_view buffered);

 private:
  header_parser parser_;
  std::string last_header_;
  std::optional<frame_info> last_info_;
};

// True when `content` is an echo answer carrying exactly `payload`: a byte
// comparison with the canonical answer first, and a full JSON parse for any
// other spelling (so a server that formats differently is not penalised and
// a server that answers wrongly is caught).
bool echo_answer_matches(std::string_view content, std::string_view canonical,
                         std::string_view payload);

}  // namespace comet_bench
