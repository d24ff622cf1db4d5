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

// What comet-net's examples use with it: JSON text in and out.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
