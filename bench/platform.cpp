#include "platform.hpp"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

namespace comet_bench {

std::vector<int> current_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0) return cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &set)) cpus.push_back(i);
  return cpus;
}

unsigned usable_cpus() {
  const auto n = current_cpus().size();
  return n ? static_cast<unsigned>(n) : std::max(1u, std::thread::hardware_concurrency());
}

cpu_plan plan_cpus(bool pin) {
  cpu_plan plan;
  if (!pin) return plan;
  std::vector<int> cpus = current_cpus();
  if (cpus.size() < 2) return plan;
  plan.load = {cpus.back()};
  cpus.pop_back();
  plan.server = std::move(cpus);
  return plan;
}

std::string cpu_plan::describe() const {
  if (server.empty() && load.empty()) return "not pinned";
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (int c : v) s += (s.empty() ? "" : ",") + std::to_string(c);
    return s;
  };
  return "servers on CPU " + list(server) + ", load generator on CPU " + list(load);
}

void name_this_thread(const char* name) { pthread_setname_np(pthread_self(), name); }

bool pin_this_thread(const std::vector<int>& cpus) {
  if (cpus.empty()) return true;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

std::size_t raise_fd_limit(std::size_t wanted) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur >= wanted) return lim.rlim_cur;
  if (lim.rlim_max < wanted) {  // root may raise the hard limit too
    rlimit higher{wanted, wanted};
    if (setrlimit(RLIMIT_NOFILE, &higher) == 0) return wanted;
  }
  lim.rlim_cur = std::min<rlim_t>(wanted, lim.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) getrlimit(RLIMIT_NOFILE, &lim);
  return lim.rlim_cur;
}

bool is_loopback(const boost::asio::ip::address& a) {
  if (a.is_v4()) return a.to_v4().is_loopback();
  const auto v6 = a.to_v6();
  if (v6.is_loopback()) return true;
  if (v6.is_v4_mapped())
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).is_loopback();
  return false;
}

}  // namespace comet_bench
