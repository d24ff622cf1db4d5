// Internal: pieces of the Python-spelling JSON writer shared with the codec.
#pragma once

#include <boost/json/fwd.hpp>
#include <boost/json/storage_ptr.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace comet {
struct request_message;
}

namespace comet::detail {
void append_json_string(std::string& out, std::string_view s);
// comet::parse_json with a lower nesting limit (at most 64), its value
// built on `storage` (the default resource when null).
std::optional<boost::json::value> parse_json(std::string_view text, std::string& error,
                                             std::size_t max_depth,
                                             boost::json::storage_ptr storage = {});
// comet::decode_request, its value built on `storage`.
std::optional<request_message> decode_request(std::string_view content, std::string& error,
                                              boost::json::storage_ptr storage);
// Appends what encode_response returns.
void append_response(std::string& out, const boost::json::value& result);
// Appends what encode_request returns.
void append_request(std::string& out, std::string_view action, const boost::json::value& value);
}
