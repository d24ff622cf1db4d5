// Internal: strings kept for their capacity, a few per thread. An answer
// encoded by a coroutine handler travels to its connection as a string;
// once appended to the write buffer, the string comes back here, and the
// next answer encoded on this thread reuses its storage.
#pragma once

#include <string>

namespace comet::detail {

// An empty string, with the capacity of one given back on this thread if any.
std::string take_spare_string() noexcept;
// Keeps `s` for take_spare_string() (up to 64 strings of up to 64 KiB each
// a thread; others are freed).
void give_back_string(std::string&& s) noexcept;

}  // namespace comet::detail
