// Internal: the bytes a connection has received and not yet consumed, for
// host and client connections alike. Frames are decoded in place from
// data(); consume() drops what was decoded; prepare() makes room for the
// next read, compacting and growing as the frame being read needs.
// release() gives the storage of an emptied buffer to its thread's pool,
// which the next prepare() on that thread takes from: a connection waiting
// for its peer holds no buffer, and one that is busy takes no allocation.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace comet {

class read_buffer {
 public:
  static constexpr std::size_t chunk = 16 * 1024;

  std::string_view data() const noexcept { return {bytes_.data() + start_, end_ - start_}; }
  std::size_t size() const noexcept { return end_ - start_; }
  bool empty() const noexcept { return start_ == end_; }

  void consume(std::size_t n) noexcept {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;
  }

  // Room to read into, such that `needed` unconsumed bytes (the rest of the
  // frame being decoded) fit. Valid until the next call; commit() what was read.
  std::pair<char*, std::size_t> prepare(std::size_t needed) {
    if (bytes_.empty()) take_pooled();
    // Compact only when the tail is short: a memmove per read would cost
    // more than it saves on pipelined traffic.
    if (start_ > 0 && (bytes_.size() - end_ < chunk / 2 || bytes_.size() < start_ + needed)) {
      std::memmove(bytes_.data(), bytes_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    const std::size_t want = start_ + needed;
    if (bytes_.size() < want || bytes_.size() - end_ < chunk / 4)
      bytes_.resize(std::max({want, end_ + chunk, std::min(2 * bytes_.size(), want + chunk)}));
    return {bytes_.data() + end_, bytes_.size() - end_};
  }
  void commit(std::size_t n) noexcept { end_ += n; }

  // When empty: the storage goes to this thread's pool (a buffer grown past
  // four chunks by a large frame is freed instead).
  void release() noexcept {
    if (!empty() || bytes_.empty()) return;
    auto& pool = spare();
    if (bytes_.size() <= 4 * chunk && pool.size() < max_spare) {
      try {
        pool.push_back(std::move(bytes_));
      } catch (...) {  // no room to keep it: it is freed
      }
    }
    bytes_ = std::string();
    start_ = end_ = 0;
  }

 private:
  // Buffers a thread keeps for its connections' next reads.
  static constexpr std::size_t max_spare = 64;
  static std::vector<std::string>& spare() noexcept {
    thread_local std::vector<std::string> pool;
    return pool;
  }
  void take_pooled() noexcept {
    auto& pool = spare();
    if (pool.empty()) return;
    bytes_ = std::move(pool.back());
    pool.pop_back();
  }

  std::string bytes_;
  std::size_t start_ = 0;
  std::size_t end_ = 0;  // bytes [start_, end_) are received and not consumed
};

// Frames waiting to be written, and the write in progress: new frames are
// appended while a write runs and go out together in the next one.
class write_queue {
 public:
  // Append frames here.
  std::string& pending() noexcept { return pending_; }
  bool writing() const noexcept { return writing_; }
  // Bytes queued or being written.
  std::size_t buffered() const noexcept { return pending_.size() + in_flight_.size(); }
  bool idle() const noexcept { return !writing_ && pending_.empty(); }

  // The bytes of the next write (empty: nothing to write, or a write runs);
  // they stay valid until done().
  std::string_view begin() {
    if (writing_ || pending_.empty()) return {};
    writing_ = true;
    std::swap(pending_, in_flight_);
    return in_flight_;
  }
  void done() noexcept {
    writing_ = false;
    in_flight_.clear();
  }
  // Drops what is queued (not the write in progress).
  void discard() noexcept { pending_.clear(); }

 private:
  std::string pending_, in_flight_;
  bool writing_ = false;
};

}  // namespace comet
