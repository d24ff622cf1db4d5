// Code of the program comet-net joins that still uses Asio's deprecated
// names (io_service, post on it): linking comet::framework must not stop it
// compiling, so the package sets no BOOST_ASIO_NO_DEPRECATED.
#include <comet/comet.hpp>

#include <boost/asio/io_service.hpp>
#include <boost/asio/post.hpp>

int legacy_ticks() {
  boost::asio::io_service service;
  int ticks = 0;
  for (int i = 0; i < 3; ++i) boost::asio::post(service, [&ticks] { ++ticks; });
  service.run();
  return ticks;
}
