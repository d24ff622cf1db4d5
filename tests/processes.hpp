// The executables as child processes: start one with its output in files,
// wait for it with a time limit, or run comet-host on a free port and stop
// it with SIGTERM. For tests/test_cli.cpp and tests/test_lifecycle.cpp, and
// python3 for tests/test_convert.cpp.
#pragma once

#include "support.hpp"

#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <spawn.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <string>
#include <vector>

extern char** environ;

namespace comet::test {

namespace fs = std::filesystem;

inline fs::path scratch_dir() {
  auto dir = fs::temp_directory_path() / ("comet-cli-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir;
}

struct process {
  pid_t pid = -1;
  fs::path out, err;

  std::string stdout_text() const { return read_file(out.string()); }
  std::string stderr_text() const { return read_file(err.string()); }

  // Exit status, or -1 after killing a process that overran `limit`.
  int wait(std::chrono::milliseconds limit = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        return -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

// Any program, found on PATH as a shell would (python3...).
inline process start_program(const std::string& program, std::vector<std::string> args,
                             const fs::path& input = "/dev/null") {
  static int counter = 0;
  const auto dir = scratch_dir();
  const std::string name = fs::path(program).filename().string();
  process p;
  p.out = dir / (name + "." + std::to_string(++counter) + ".out");
  p.err = dir / (name + "." + std::to_string(counter) + ".err");
  args.insert(args.begin(), program);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, input.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, p.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, p.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const int rc = ::posix_spawnp(&p.pid, program.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(rc == 0);
  return p;
}

// One of the build's executables (comet-host, comet-send).
inline process start(const std::string& program, std::vector<std::string> args,
                     const fs::path& input = "/dev/null") {
  return start_program(std::string(COMET_BIN_DIR) + "/" + program, std::move(args), input);
}

struct result {
  int status;
  std::string out, err;
};

inline result run_cli(const std::string& program, std::vector<std::string> args,
               const fs::path& input = "/dev/null") {
  auto p = start(program, std::move(args), input);
  const int status = p.wait();
  return {status, p.stdout_text(), p.stderr_text()};
}

// Starts comet-host on a free port (with `threads` io threads) and reads the
// address it logs.
struct running_host {
  explicit running_host(std::vector<std::string> extra = {}, const std::string& threads = "1")
      : p(start("comet-host", with(std::move(extra), {"--port", "0", "--threads", threads}))) {
    const std::string marker = "listening on ";
    for (int i = 0; i < 1000; ++i) {
      const std::string log = p.stderr_text();
      if (auto pos = log.find(marker); pos != std::string::npos) {
        // "listening on 127.0.0.1:5000" or, for a name, "listening on
        // 127.0.0.1:5000 and [::1]:5000 (localhost)": the first is start()'s.
        const auto end = log.find_first_of(" \n", pos + marker.size());
        if (end != std::string::npos) {
          address = log.substr(pos + marker.size(), end - pos - marker.size());
          return;
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    FAIL("comet-host did not log its address: " << p.stderr_text());
  }
  ~running_host() {
    if (!stopped) {
      ::kill(p.pid, SIGKILL);
      p.wait();
    }
  }
  int stop() {
    stopped = true;
    ::kill(p.pid, SIGTERM);
    return p.wait();
  }
  static std::vector<std::string> with(std::vector<std::string> a, std::vector<std::string> b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }
  process p;
  std::string address;
  bool stopped = false;
};

}  // namespace comet::test
