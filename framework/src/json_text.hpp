// Internal: pieces of the Python-spelling JSON writer shared with the codec.
#pragma once

#include <string>
#include <string_view>

namespace comet::detail {
void append_json_string(std::string& out, std::string_view s);
}
