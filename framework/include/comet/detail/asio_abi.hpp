// Internal: the Asio configuration the library's interface depends on.
// comet-net's functions take and return boost::asio::any_io_executor, and
// BOOST_ASIO_USE_TS_EXECUTOR_AS_DEFAULT makes that a different type: a
// program built with it would not link against the library. Every other Asio
// macro (BOOST_ASIO_NO_DEPRECATED among them) is the program's own choice.
#pragma once

#if defined(BOOST_ASIO_USE_TS_EXECUTOR_AS_DEFAULT)
#error "comet-net: BOOST_ASIO_USE_TS_EXECUTOR_AS_DEFAULT makes boost::asio::any_io_executor a different type from the one comet-net was built with; build without it"
#endif
