#pragma once

#define COMET_VERSION_MAJOR 0
#define COMET_VERSION_MINOR 1
#define COMET_VERSION_PATCH 0
#define COMET_VERSION_STRING "0.1.0"

namespace comet {
inline constexpr const char* version = COMET_VERSION_STRING;
}
