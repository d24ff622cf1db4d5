// Internal: pieces of the Python-spelling JSON writer shared with the codec.
#pragma once

#include <boost/json/fwd.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace comet::detail {
void append_json_string(std::string& out, std::string_view s);
// comet::parse_json with a lower nesting limit (at most 64).
std::optional<boost::json::value> parse_json(std::string_view text, std::string& error,
                                             std::size_t max_depth);
// Appends what encode_request returns.
void append_request(std::string& out, std::string_view action, const boost::json::value& value);
}
