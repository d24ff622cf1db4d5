// The text of config/default.toml, compiled into the library by CMake from
// framework/src/default_config.cpp.in. Kept out of config.hpp so only the
// generated file and config.cpp see it; callers use comet::default_config_text().
#pragma once

#include <string_view>

namespace comet::detail {

std::string_view embedded_default_config() noexcept;

}  // namespace comet::detail
