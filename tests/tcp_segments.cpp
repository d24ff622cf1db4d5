#include "tcp_segments.hpp"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

namespace comet::test {

long data_segments_in(int socket_fd) {
  struct tcp_info info {};
  socklen_t length = sizeof info;
  if (::getsockopt(socket_fd, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
  if (length < offsetof(struct tcp_info, tcpi_data_segs_in) + sizeof info.tcpi_data_segs_in)
    return -1;
  return static_cast<long>(info.tcpi_data_segs_in);
}

}  // namespace comet::test
