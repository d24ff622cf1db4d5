#include "idle.hpp"

#include "comet_side.hpp"
#include "platform.hpp"
#include "wire.hpp"

#include <comet/codec.hpp>

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

namespace comet_bench {
namespace {

constexpr std::size_t per_source_address = 20000;

std::size_t heap_in_use() {
  const struct mallinfo2 m = ::mallinfo2();
  return m.uordblks + m.hblkhd;
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// Reads exactly `n` bytes within 10 s; false otherwise.
bool read_exactly(int fd, char* data, std::size_t n) {
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (n > 0) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 1000) < 0 && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() > limit) return false;
    const ssize_t got = ::recv(fd, data, n, MSG_DONTWAIT);
    if (got == 0) return false;
    if (got < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return false;
    }
    data += got;
    n -= static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace

idle_result run_idle(std::size_t connections, bool metrics) {
  idle_result out;
  out.connections = connections;
  const std::size_t wanted = connections + 256;
  if (const std::size_t limit = raise_fd_limit(wanted); limit < wanted) {
    out.errors = 1;
    out.first_error = "--idle " + std::to_string(connections) + " needs " + std::to_string(wanted) +
                      " file descriptors and this process may have " + std::to_string(limit) +
                      ": raise the hard limit (ulimit -Hn, as root) or ask for fewer";
    return out;
  }

  comet_host_target host(1, comet::tls_settings{}, metrics, connections + 16);
  const std::string request = [] {
    comet::frame_header h;
    h.keep_alive = true;
    const boost::json::value value(make_payload(32));
    return comet::encode_frame(h, comet::encode_request("echo", value));
  }();
  std::vector<char> answer;
  std::size_t answer_size = 0;

  auto fail = [&out](std::string what) {
    ++out.errors;
    if (out.first_error.empty()) out.first_error = std::move(what);
  };
  auto connect_one = [&](std::size_t i) -> int {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in from{};
    from.sin_family = AF_INET;
    from.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + static_cast<std::uint32_t>(i / per_source_address));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(host.port());
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((i >= per_source_address &&
         ::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) ||
        ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  };

  // One warm connection first: the host's one-time costs (its first
  // connection's pools, the answer's size) are not counted.
  const int warm = connect_one(0);
  if (warm < 0 || ::send(warm, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    fail(std::string("cannot connect to the host: ") + std::strerror(errno));
    return out;
  }
  {
    char header[2];
    if (!read_exactly(warm, header, 2)) {
      fail("the host did not answer the first request");
      ::close(warm);
      return out;
    }
    const std::size_t n = (static_cast<unsigned char>(header[0]) << 8) | static_cast<unsigned char>(header[1]);
    std::vector<char> rest(n);
    read_exactly(warm, rest.data(), n);
    const auto h = boost::json::parse(std::string_view(rest.data(), n));
    answer_size = 2 + n + static_cast<std::size_t>(h.at("content-length").to_number<std::uint64_t>());
    std::vector<char> content(answer_size - 2 - n);
    read_exactly(warm, content.data(), content.size());
  }
  answer.resize(answer_size);

  // The clients live in a child process: each process then holds one end
  // of each connection, within its own file limit.
  int ready[2], release[2];
  if (::pipe(ready) != 0 || ::pipe(release) != 0) {
    fail(std::string("pipe: ") + std::strerror(errno));
    return out;
  }
  const std::size_t heap_before = heap_in_use();
  const std::size_t rss_before = resident_bytes();
  const pid_t child = ::fork();
  if (child < 0) {
    fail(std::string("fork: ") + std::strerror(errno));
    return out;
  }
  if (child == 0) {
    // Only system calls from here on: the parent has threads.
    ::close(ready[0]);
    ::close(release[1]);
    std::uint64_t opened = 0;
    for (std::size_t i = 0; i < connections; ++i) {
      const int fd = connect_one(i);
      if (fd < 0) break;
      if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()) ||
          !read_exactly(fd, answer.data(), answer_size))
        break;
      ++opened;
    }
    (void)!::write(ready[1], &opened, sizeof opened);
    char byte;
    (void)!::read(release[0], &byte, 1);  // returns when the parent closes its end
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(release[0]);
  std::uint64_t opened = 0;
  const bool told = ::read(ready[0], &opened, sizeof opened) == static_cast<ssize_t>(sizeof opened);
  // Every connection answered is open on the host (each answer was read).
  const std::size_t heap_after = heap_in_use();
  const std::size_t rss_after = resident_bytes();
  if (!told || opened < connections)
    fail("only " + std::to_string(opened) + " of " + std::to_string(connections) +
         " connections were opened and answered");
  const auto n = static_cast<double>(opened);
  if (n > 0) {
    out.heap_per_connection = (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / n;
    out.rss_per_connection = (static_cast<double>(rss_after) - static_cast<double>(rss_before)) / n;
  }
  const auto open = host.stats().connections_open;
  if (open < opened + 1)
    fail("the host holds " + std::to_string(open) + " connections, not " + std::to_string(opened + 1));
  ::close(release[1]);
  ::close(ready[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(warm);
  return out;
}

void print_idle(std::FILE* out, const idle_result& r, bool metrics) {
  std::fprintf(out, "idle keep-alive connections: %zu (metrics %s)\n", r.connections, metrics ? "on" : "off");
  std::fprintf(out, "  host heap per connection (mallinfo2): %8.0f bytes\n", r.heap_per_connection);
  std::fprintf(out, "  process RSS per connection:           %8.0f bytes\n", r.rss_per_connection);
  if (r.errors) std::fprintf(out, "errors: %zu, first: %s\n", r.errors, r.first_error.c_str());
}

}  // namespace comet_bench
