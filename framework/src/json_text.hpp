// Internal: pieces of the Python-spelling JSON writer shared with the codec.
#pragma once

#include <boost/json/fwd.hpp>

#include <string>
#include <string_view>

namespace comet::detail {
void append_json_string(std::string& out, std::string_view s);
// Appends what encode_request returns.
void append_request(std::string& out, std::string_view action, const boost::json::value& value);
}
