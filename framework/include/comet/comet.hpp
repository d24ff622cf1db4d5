// The whole public API of comet-net.
#pragma once

#include <comet/client.hpp>
#include <comet/codec.hpp>
#include <comet/config.hpp>
#include <comet/convert.hpp>
#include <comet/endpoint.hpp>
#include <comet/errors.hpp>
#include <comet/handlers.hpp>
#include <comet/host.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>
#include <comet/version.hpp>

// What programs use with it: JSON text in and out, Asio's usual completion
// tokens and coroutine helpers, and Boost.Describe for typed handlers and
// sends (BOOST_DESCRIBE_STRUCT, BOOST_DESCRIBE_ENUM).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/describe.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
