// Internal: the header parser's fast path, for frame_decoder.
#pragma once

#include <comet/codec.hpp>

#include <string_view>

namespace comet::detail {

// Reads a header written exactly as COMET and comet-net write it into `h`,
// which holds the defaults in every field this path does not set (the
// strings, auth-token, traceparent, features, window, control). False
// for any other spelling (parse_frame_header reads those).
bool parse_canonical_frame_header(std::string_view text, frame_header& h);

}  // namespace comet::detail
