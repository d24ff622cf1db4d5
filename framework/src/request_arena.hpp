// Internal: where a host's request values live (issue 21, item 3). Each io
// thread has one arena: a bump allocator over one block, which starts over
// whenever nothing allocated from it is alive. The values of a batch of
// requests read together are built there, and a plain handler's copy of
// one (Boost.JSON copies share their source's resource) too, so that
// answering them takes no heap allocation. A value that outlives its batch
// (a coroutine handler's, or a copy a handler kept) keeps the block from
// starting over; the arena then hands out what is left of it, and the heap
// past that, until the last such value is gone. Allocations on another
// thread go to the heap. Arenas are never freed (a value may outlive its
// thread): a thread that ends leaves its arena to the next one.
#pragma once

#include <boost/json/storage_ptr.hpp>

namespace comet::detail {

// This thread's arena.
const boost::json::storage_ptr& request_storage();
// A batch was answered (or handed on): the arena starts over if nothing
// allocated from it is alive.
void end_request_batch() noexcept;

}  // namespace comet::detail
