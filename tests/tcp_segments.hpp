// How many TCP segments carrying data a socket has received (Linux
// TCP_INFO tcpi_data_segs_in): an observable for "answers produced together
// go out in one write". In its own translation unit: <linux/tcp.h> and the
// <netinet/tcp.h> Asio includes cannot share one.
#pragma once

namespace comet::test {

// -1 when the kernel does not report it.
long data_segments_in(int socket_fd);

}  // namespace comet::test
