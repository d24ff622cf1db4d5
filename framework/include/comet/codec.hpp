// The wire format (docs/protocol.md): pure functions and a frame decoder over
// buffers, no sockets. A frame is a 2-byte big-endian header length, a JSON
// header, and `content-length` bytes of content.
//
// Frames and JSON are written the way COMET's Python peers write them
// (`json.dumps(..., ensure_ascii=False)`: ", " and ": " separators, raw
// UTF-8), so our requests and responses are byte-identical to COMET's.
#pragma once

#include <comet/errors.hpp>

#include <boost/json/value.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace comet {

inline constexpr std::size_t proto_header_size = 2;
inline constexpr std::size_t max_json_header_size = 0xFFFF;
inline constexpr std::string_view json_content_type = "text/json";

// The extensions a peer speaks, announced in a "features" header key
// (docs/protocol.md, "Announced extensions"); names this version does not
// know are ignored, so a newer peer may announce more.
namespace feature {
inline constexpr std::uint32_t cancel = 1u << 0;      // "cancel": cancel frames
inline constexpr std::uint32_t going_away = 1u << 1;  // "going-away": the host's drain notice
inline constexpr std::uint32_t stream = 1u << 2;      // "stream": streams and subscriptions
inline constexpr std::uint32_t trace = 1u << 3;       // "trace": requests may carry "traceparent"
// Every feature this version speaks.
inline constexpr std::uint32_t all = cancel | going_away | stream | trace;
struct named {
  std::uint32_t bit;
  std::string_view name;
};
inline constexpr std::array<named, 4> names{
    {{cancel, "cancel"}, {going_away, "going-away"}, {stream, "stream"}, {trace, "trace"}}};
}  // namespace feature

// What a frame carries: a request or an answer, or a control frame
// ("control" header key). A control frame of a kind this version does not
// know reads as `unknown_control`, so that it is ignored, never run.
enum class frame_kind : std::uint8_t { message, cancel, going_away, credit, unknown_control };

// What a frame is to a stream ("stream" header key, docs/protocol.md,
// "Streams and subscriptions"): in a request, `open` (a stream of an
// action) or `subscribe` (a topic); from the host, `begin` (the stream or
// subscription is open), `item` (one of its items) and `end` (the last
// frame; its content, if any, is an error response). A value this version
// does not know reads as `unknown`.
enum class stream_part : std::uint8_t { none, open, subscribe, begin, item, end, unknown };

struct frame_header {
  std::string byteorder = "little";
  std::string content_type{json_content_type};
  std::string content_encoding = "utf-8";
  std::size_t content_length = 0;
  // The extensions of docs/protocol.md; absent unless set.
  bool keep_alive = false;
  std::optional<std::uint64_t> request_id;
  // The shared secret a host may require ("auth-token"); empty when absent.
  std::string auth_token;
  // Announced extensions: "features" (a bit per feature:: name; set when
  // the key is present, even as []), and in a host's answer "window" (the
  // requests a connection may have in flight) and "window-bytes" (their
  // content bytes).
  std::optional<std::uint32_t> features;
  std::optional<std::uint64_t> window;
  std::optional<std::uint64_t> window_bytes;
  // "control": a cancel (of `request_id`) or a going-away notice, whose
  // "last-request-id" is the last request the host read on the connection.
  frame_kind kind = frame_kind::message;
  std::optional<std::uint64_t> last_request_id;
  // Streams: the frame's part in one, "credit" (items the reader grants:
  // in a stream's request, and in a credit control frame), "sequence" (a
  // published item's number in its topic).
  stream_part stream = stream_part::none;
  std::optional<std::uint64_t> credit;
  std::optional<std::uint64_t> sequence;
  // A request's W3C trace context ("traceparent"), as written: the reader
  // validates it. Empty when absent.
  std::string traceparent;

  bool is_json() const noexcept { return content_type == json_content_type; }
};

// The wire spelling of a stream part ("item"); empty for none and unknown.
std::string_view stream_part_name(stream_part p) noexcept;

// Parses JSON text as Python's json.loads reads it, numbers included:
// doubles are correctly rounded (Boost.JSON 1.81's own parser can be one
// unit in the last place off for 16- and 17-digit numbers). Nesting deeper
// than 64 levels is refused. Returns nullopt and the reason for text that
// is not JSON.
std::optional<boost::json::value> parse_json(std::string_view text, std::string& error);

// Serializes `v` as Python's json.dumps(v, ensure_ascii=False) would.
std::string to_json_text(const boost::json::value& v);
void append_json_text(std::string& out, const boost::json::value& v);

// Appends a whole frame; the header's content_length is taken from `content`.
void append_frame(std::string& out, const frame_header& header, std::string_view content);
std::string encode_frame(const frame_header& header, std::string_view content);

// Incremental decoder: feed it the bytes received so far (starting at a frame
// boundary) and it says whether a whole frame is there. It remembers the
// parsed JSON header between calls, so a large content is not re-parsed.
class frame_decoder {
 public:
  enum class status {
    need_more,  // `bytes_needed` says how many bytes the frame needs in all, when known
    complete,   // `header`, `content` and `frame_size` are set
    too_large,  // header parsed; content_length exceeds the limit (no content read)
    malformed,  // `error` says why; the stream cannot be resynchronised
  };

  explicit frame_decoder(std::size_t max_content_length) noexcept
      : max_content_length_(max_content_length) {}

  status decode(std::string_view buffered);

  // Forget the current frame; call after consuming `frame_size()` bytes.
  void reset() noexcept;

  const frame_header& header() const noexcept { return header_; }
  std::string_view content() const noexcept { return content_; }
  std::size_t frame_size() const noexcept { return frame_size_; }
  std::size_t bytes_needed() const noexcept { return bytes_needed_; }
  const std::string& error() const noexcept { return error_; }

 private:
  std::size_t max_content_length_;
  bool have_header_ = false;
  // header_ holds the defaults in every field the canonical path leaves
  // alone (false after a header read by the full parser).
  bool header_canonical_ = true;
  std::size_t header_size_ = 0;
  frame_header header_;
  std::string_view content_;
  std::size_t frame_size_ = 0;
  std::size_t bytes_needed_ = proto_header_size;
  std::string error_;
};

// Parses a JSON header; returns an error message instead of throwing.
std::optional<frame_header> parse_frame_header(std::string_view json, std::string& error);

// Request content: {"action": "...", "value": ...}
struct request_message {
  std::string action;
  boost::json::value value;
};
std::string encode_request(std::string_view action, const boost::json::value& value);
// Returns nullopt and a message for content that is not JSON, not an object,
// or has no string "action". A missing "value" reads as null.
std::optional<request_message> decode_request(std::string_view content, std::string& error);

// Response content: {"result": ...} or, for failures,
// {"result": "Error: <message>", "error": {"code": "...", "message": "..."}}
struct response_message {
  boost::json::value result;
  std::optional<errc> error;  // set for an error response
  std::string error_code;     // its wire spelling
  std::string error_message;
};
std::string encode_response(const boost::json::value& result);
std::string encode_error_response(errc code, std::string_view message);
// Throws comet::error(errc::protocol_error) for content that is not a response.
response_message decode_response(std::string_view content);

}  // namespace comet
