#include <comet/client.hpp>

#include <comet/codec.hpp>
#include <comet/errors.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>

#include "client_impl.hpp"
#include "endpoint_set.hpp"
#include "spawn.hpp"
#include "trace.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>

#include <stdexcept>

namespace comet {
bool runs_on_this_thread(const asio::any_io_executor& ex) {
  using io_executor = asio::io_context::executor_type;
  if (auto* e = ex.target<io_executor>()) return e->running_in_this_thread();
  if (auto* s = ex.target<asio::strand<io_executor>>())
    return s->get_inner_executor().running_in_this_thread();
  if (auto* s = ex.target<asio::strand<asio::any_io_executor>>())
    return runs_on_this_thread(s->get_inner_executor());
  return false;
}

namespace {

// Ends a tracked send however it ends.
struct send_scope {
  send_tracker* tracker;
  explicit send_scope(send_tracker& t) : tracker(&t) {}
  send_scope(const send_scope&) = delete;
  send_scope& operator=(const send_scope&) = delete;
  ~send_scope() { tracker->end(); }
};

}  // namespace

client::impl::impl(asio::any_io_executor ex, bool single_threaded,
                   std::shared_ptr<const peer_info> peer,
                   const std::vector<asio::any_io_executor>& contexts)
    : executor(std::move(ex)), single_threaded(single_threaded), info(std::move(peer)) {
  entries.push_back(info->peer);
  if (!info->options.keep_alive) return;
  if (single_threaded && contexts.size() > 1) {
    for (const auto& context : contexts)
      pools.push_back(peer_pool::make(context, true, info, tracker));
  } else {
    asio::any_io_executor serial =
        single_threaded ? executor : asio::any_io_executor(asio::make_strand(executor));
    pools.push_back(peer_pool::make(std::move(serial), single_threaded, info, tracker));
  }
  pool = pools.front();
}

peer_pool* client::impl::inline_pool() const noexcept {
  if (!pool) return nullptr;
  peer_pool& here = pool_here();
  // Not inline in a traced handler: the pool resumes an inline send
  // directly, not through the handler's executor, which makes its
  // traceparent current (trace.hpp).
  return here.inline_ok() && detail::current_traceparent().empty() ? &here : nullptr;
}

peer_pool& client::impl::pool_here() const noexcept {
  for (const auto& p : pools)
    if (p->inline_ok()) return *p;
  return *pool;
}

client_stats client::impl::pool_stats() const noexcept {
  client_stats sum;
  for (const auto& p : pools) {
    const client_stats s = p->stats();
    sum.queued += s.queued;
    sum.queued_total += s.queued_total;
    sum.queue_wakeups += s.queue_wakeups;
    sum.connects += s.connects;
  }
  return sum;
}

client::impl::impl(asio::any_io_executor ex, bool single_threaded,
                   std::shared_ptr<const peer_info> peer, std::vector<endpoint> list,
                   std::shared_ptr<endpoint_set> endpoints)
    : executor(std::move(ex)),
      single_threaded(single_threaded),
      info(std::move(peer)),
      entries(std::move(list)),
      set(std::move(endpoints)) {}

client::impl::~impl() {
  // The last handle is gone, so no send is in flight (each holds one): the
  // pool's idle connections close.
  const error why(errc::client_closed, "the client to " + info->describe() + " was destroyed");
  if (set) set->close_now(why);
  close_pools(why);
}

void client::impl::close_pools(const error& why) {
  std::shared_ptr<peer_pool> streams;
  {
    std::lock_guard lock(stream_pool_mutex_);
    if (!pools_closed_) {
      pools_closed_ = true;
      pools_closed_why_ = why;
    }
    streams = stream_pool_;
  }
  auto all = pools;
  if (streams) all.push_back(std::move(streams));
  for (const auto& p : all) asio::post(p->strand(), [p, why] { p->close(why); });
}

std::shared_ptr<peer_pool> client::impl::stream_pool() {
  if (pool) return pool_here().shared_from_this();
  std::lock_guard lock(stream_pool_mutex_);
  if (!stream_pool_) {
    asio::any_io_executor serial =
        single_threaded ? executor : asio::any_io_executor(asio::make_strand(executor));
    stream_pool_ = peer_pool::make(std::move(serial), single_threaded, info, tracker);
    // Closed already: its first use fails as the client's pool would.
    if (pools_closed_)
      asio::post(stream_pool_->strand(),
                 [p = stream_pool_, why = *pools_closed_why_] { p->close(why); });
  }
  return stream_pool_;
}

std::chrono::milliseconds client::impl::timeout_of(const send_options& o) const noexcept {
  const auto fallback = info->options.request_timeout;
  return o.timeout.count() > 0 ? std::min(o.timeout, fallback) : fallback;
}

client_options client_options::from_config(const config& cfg, std::string name) {
  client_options o;
  o.name = std::move(name);
  o.connect_timeout = cfg.framework.connect_timeout;
  o.request_timeout = cfg.framework.request_timeout;
  o.max_content_length = cfg.framework.max_content_length;
  o.keep_alive = cfg.framework.keep_alive;
  o.max_connections = cfg.framework.max_connections_per_peer;
  o.auth_token = cfg.framework.auth_token;
  o.tls = cfg.framework.tls;
  o.resolve_max_age = cfg.framework.resolve_max_age;
  return o;
}

namespace {
std::shared_ptr<const peer_info> make_peer_info(endpoint peer, client_options options) {
  // A name is resolved for each connection (peer_info::connect).
  std::optional<tcp::endpoint> target;
  if (peer.is_address()) target = tcp::endpoint(asio::ip::make_address(peer.ip), peer.port);
  auto tls = make_client_tls_context(options.tls);
  auto sessions = tls ? std::make_shared<tls_session_cache>() : nullptr;
  return std::make_shared<const peer_info>(peer_info{std::move(peer), std::move(options), target,
                                                     std::move(tls), std::move(sessions)});
}
}  // namespace

namespace {
std::string metrics_label(const peer_info& info) {
  return info.options.name.empty() ? info.peer.to_string() : info.options.name;
}

std::shared_ptr<client::impl> make_peer_client(asio::any_io_executor ex, bool single_threaded,
                                               endpoint peer, client_options options,
                                               const std::vector<asio::any_io_executor>& contexts = {}) {
  auto self = std::make_shared<client::impl>(std::move(ex), single_threaded,
                                             make_peer_info(std::move(peer), std::move(options)),
                                             contexts);
  self->metrics = std::make_shared<client_metrics>(metrics_label(*self->info),
                                                   self->info->options.metrics, self->info->peer);
  return self;
}
}  // namespace

client::client(asio::any_io_executor executor, endpoint peer, client_options options)
    : impl_(make_peer_client(std::move(executor), false, std::move(peer), std::move(options))) {}

client::client(io_pool& pool, endpoint peer, client_options options)
    : impl_(make_peer_client(pool.get_executor(), pool.single_threaded_contexts(), std::move(peer),
                             std::move(options), pool.executors())) {}

namespace {
std::shared_ptr<client::impl> make_set_client(asio::any_io_executor ex, bool single_threaded,
                                              std::vector<endpoint> endpoints,
                                              client_options options) {
  if (endpoints.empty())
    throw error(errc::usage_error,
                "a client needs at least one endpoint" +
                    (options.name.empty() ? std::string() : " ('" + options.name + "')") +
                    "; give it an address and port such as 127.0.0.1:65432");
  for (const auto& e : endpoints)
    if (e.port == 0 || !(e.is_address() || is_host_name(e.ip)))
      throw error(errc::usage_error, "'" + e.to_string() + "' is not a usable endpoint" +
                                         (options.name.empty() ? std::string()
                                                               : " of client '" + options.name + "'") +
                                         ": give an IP address or a host name, and a port from 1 to 65535");
  auto describe_as = make_peer_info(endpoints.front(), options);
  auto metrics = std::make_shared<client_metrics>(metrics_label(*describe_as), options.metrics,
                                                  std::nullopt);
  auto set = std::make_shared<endpoint_set>(ex, single_threaded, endpoints, std::move(options),
                                            describe_as, metrics);
  auto self = std::make_shared<client::impl>(std::move(ex), single_threaded, std::move(describe_as),
                                             std::move(endpoints), std::move(set));
  self->metrics = std::move(metrics);
  return self;
}
}  // namespace

client::client(asio::any_io_executor executor, std::vector<endpoint> endpoints,
               client_options options)
    : impl_(make_set_client(std::move(executor), false, std::move(endpoints), std::move(options))) {}

client::client(io_pool& pool, std::vector<endpoint> endpoints, client_options options)
    : impl_(make_set_client(pool.get_executor(), pool.single_threaded_contexts(),
                            std::move(endpoints), std::move(options))) {}

namespace {
// A send's end, for its metrics and its observer.
void record_send(const client::impl& self, const std::string& action, std::string_view traceparent,
                 const send_report& report, const error* failure,
                 std::chrono::steady_clock::time_point began) {
  const auto took = detail::answer_time_or_now() - began;
  const std::optional<errc> code =
      failure ? std::optional(static_cast<errc>(failure->code().value())) : std::nullopt;
  const client::impl& via = report.via ? *report.via : self;
  self.metrics->sent(via.metrics_slot, code, took);
  const auto& observer = self.info->options.observer;
  if (!observer) return;
  try {
    observer->request_done(request_event{.action = action,
                                         .peer = via.dialled ? *via.dialled : via.info->peer,
                                         .error = code,
                                         .duration = took,
                                         .request_bytes = report.request_bytes,
                                         .answer_bytes = report.answer_bytes,
                                         .traceparent = traceparent});
  } catch (const std::exception& e) {
    log(log_level::warn, "the observer of " + self.info->describe() + " threw: " + e.what());
  } catch (...) {
    log(log_level::warn, "the observer of " + self.info->describe() + " threw");
  }
}
}  // namespace

asio::awaitable<json::value> client::impl::send(std::shared_ptr<impl> self, std::string action,
                                                json::value value, send_options options,
                                                bool counted) {
  if (!counted && !self->tracker.begin()) throw self->info->client_closed();
  // A post was counted when it was made, and ends where it is spawned.
  std::optional<send_scope> in_flight;
  if (!counted) in_flight.emplace(self->tracker);
  const auto timeout = self->timeout_of(options);
  const std::string& traceparent = *options.traceparent;  // client::traced() set it
  detail::check_send_traceparent(traceparent);
  const auto began = detail::answer_time_or_now();
  send_report report;
  std::optional<error> failure;
  // One co_await a statement, and no co_return inside the try: GCC 12
  // destroys the answer twice otherwise.
  json::value answer;
  try {
    if (self->set) {
      answer = co_await self->set->send(action, value, timeout, options.idempotent, traceparent,
                                        report);
    } else if (peer_pool* here = self->inline_pool()) {
      // transmit()'s inline case, without its coroutine frame.
      report.via = self.get();
      answer = co_await here->send(action, value, timeout, false, traceparent, report);
    } else {
      answer = co_await transmit(self, action, value, timeout, traceparent, report);
    }
  } catch (const error& e) {
    failure = e;
  }
  record_send(*self, action, traceparent, report, failure ? &*failure : nullptr, began);
  if (failure) throw std::move(*failure);
  co_return answer;
}

asio::awaitable<json::value> client::impl::deliver(std::shared_ptr<impl> self,
                                                   const std::string& action,
                                                   const json::value& value,
                                                   std::chrono::milliseconds timeout,
                                                   std::string_view traceparent,
                                                   send_report& report) {
  if (!self->tracker.begin()) throw self->info->client_closed();
  const send_scope in_flight(self->tracker);
  co_return co_await transmit(std::move(self), action, value, timeout, traceparent, report);
}

asio::awaitable<json::value> client::impl::transmit(std::shared_ptr<impl> self,
                                                    const std::string& action,
                                                    const json::value& value,
                                                    std::chrono::milliseconds timeout,
                                                    std::string_view traceparent,
                                                    send_report& report) {
  report.via = self.get();
  if (self->pool) {
    if (peer_pool* inline_here = self->inline_pool())
      co_return co_await inline_here->send(action, value, timeout, false, traceparent, report);
    peer_pool& here = self->pool_here();
    co_return co_await asio::co_spawn(here.strand(),
                                      here.send(action, value, timeout, true, traceparent, report),
                                      asio::use_awaitable);
  }
  // A one-shot connection never carries the traceparent: a COMET host would see it.
  frame_header header;
  header.auth_token = self->info->options.auth_token;
  const std::string content = encode_request(action, value);
  report.request_bytes = content.size();
  std::string frame = encode_frame(header, content);
  // Named, not a temporary: GCC 12 destroys some temporaries of a co_await
  // full-expression twice.
  const auto strand = asio::make_strand(self->executor);
  co_return co_await asio::co_spawn(
      strand, one_shot_exchange(self->info, self->tracker, std::move(frame), timeout, &report),
      asio::use_awaitable);
}

send_options client::traced(send_options options) {
  if (!options.traceparent) options.traceparent = std::string(detail::current_traceparent());
  return options;
}

asio::awaitable<json::value> client::send(std::string action, json::value value,
                                          send_options options) const {
  return impl::send(impl_, std::move(action), std::move(value), traced(std::move(options)), false);
}

json::value client::send_sync(std::string action, json::value value, send_options options) const {
  if (runs_on_this_thread(impl_->executor))
    throw error(errc::would_deadlock,
                "send_sync to " + impl_->info->describe() +
                    " was called on a thread of the executor that must run it, which would "
                    "deadlock; in a coroutine or handler use `co_await client.send(...)`, or "
                    "`post(...)` to send in the background");
  auto answer = asio::co_spawn(impl_->executor,
                               send(std::move(action), std::move(value), options), asio::use_future);
  return answer.get();
}

namespace {
// Counted by post(): it goes out even if async_close() began meanwhile.
asio::awaitable<void> send_in_background(std::shared_ptr<client::impl> self, std::string action,
                                         json::value value, send_options options) {
  try {
    co_await client::impl::send(self, action, std::move(value), std::move(options), true);
  } catch (const error& e) {
    log(log_level::warn, "background send of action '" + action + "' failed: " + e.what());
  }
}
}  // namespace

void client::post(std::string action, json::value value) const {
  // Counted from now, not from when the coroutine starts: async_close()
  // waits for a post made just before it.
  if (!impl_->tracker.begin()) {
    log(log_level::warn, "background send of action '" + action + "' not made: " +
                             impl_->info->client_closed().what());
    return;
  }
  asio::co_spawn(impl_->executor,
                 send_in_background(impl_, std::move(action), std::move(value), traced({})),
                 [self = impl_](std::exception_ptr failure) {
                   self->tracker.end();
                   detail::log_failure("background send")(failure);
                 });
}

void client::close() const {
  impl_->tracker.close_now();
  if (impl_->set) impl_->set->close_now(impl_->info->closed_meanwhile());
  impl_->close_pools(impl_->info->closed_meanwhile());
}

asio::awaitable<void> client::async_close() const {
  auto self = impl_;
  self->tracker.refuse_new();
  auto ex = co_await asio::this_coro::executor;
  auto wait_idle = [&](auto handler) { self->tracker.when_idle(ex, std::move(handler)); };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(wait_idle,
                                                                      asio::use_awaitable);
  if (self->set) self->set->close_when_idle(self->info->client_closed());
  self->close_pools(self->info->client_closed());
}

bool client::closed() const noexcept { return impl_->tracker.closed(); }

client_stats client::stats() const noexcept {
  if (impl_->set) return impl_->set->stats();
  return impl_->pool_stats();
}

std::vector<comet::endpoint_stats> client::endpoint_stats() const {
  return impl_->set ? impl_->set->endpoints() : std::vector<comet::endpoint_stats>{};
}

const std::vector<endpoint>& client::endpoints() const noexcept { return impl_->entries; }

client_metrics::view client::impl::metrics_view() const {
  client_metrics::view v{metrics.get(), set ? set->stats() : pool_stats(),
                         tracker.active(), set != nullptr, {}};
  if (set) v.endpoints = set->endpoints();
  return v;
}

std::string client::metrics() const {
  std::string out;
  client_metrics::render(out, {impl_->metrics_view()});
  return out;
}

std::string client::describe() const { return impl_->info->describe(); }

const endpoint& client::peer() const noexcept { return impl_->info->peer; }
const std::string& client::name() const noexcept { return impl_->info->options.name; }
const asio::any_io_executor& client::get_executor() const noexcept { return impl_->executor; }

client_set::client_set(asio::any_io_executor executor, const config& cfg) : source_(cfg.source) {
  for (const auto& [name, peer] : cfg.clients)
    clients_.emplace(name, client(executor, peer, client_options::from_config(cfg, name)));
  for (const auto& [name, list] : cfg.client_endpoints)
    clients_.emplace(name, client(executor, list, client_options::from_config(cfg, name)));
}

void client_set::close() const {
  for (const auto& [name, c] : clients_) c.close();
}

asio::awaitable<void> client_set::async_close() const {
  for (const auto& [name, c] : clients_) co_await c.async_close();
}

std::string client_set::metrics() const {
  std::vector<client_metrics::view> views;
  for (const auto& [name, c] : clients_) views.push_back(c.impl_->metrics_view());
  std::string out;
  client_metrics::render(out, views);
  return out;
}

bool client_set::contains(std::string_view name) const { return clients_.contains(name); }

const client& client_set::operator[](std::string_view name) const {
  if (auto it = clients_.find(name); it != clients_.end()) return it->second;
  std::string known;
  for (const auto& [n, c] : clients_) known += (known.empty() ? "" : ", ") + n;
  throw error(errc::unknown_client,
              "no client named '" + std::string(name) + "' in " +
                  (source_.empty() ? std::string("the config") : source_) + " (" +
                  (known.empty() ? std::string("no clients configured") : "configured: " + known) +
                  "); add [Socket_connection.Client." + std::string(name) + "] with IP and Port");
}

std::optional<json::value> send_tcp_message(const client& target, std::string action,
                                             json::value message, bool no_thread) {
  if (!no_thread) {
    target.post(std::move(action), std::move(message));
    return std::nullopt;
  }
  json::object response;
  response["result"] = target.send_sync(std::move(action), std::move(message));
  return json::value(std::move(response));
}

}  // namespace comet
