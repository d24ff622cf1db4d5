// Reading Prometheus's text exposition format back in tests: its samples,
// and promtool's verdict on it.
#pragma once

#include "processes.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>

namespace comet::test {

// "name{labels}" as rendered -> value, for every sample line.
inline std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    REQUIRE(space != std::string::npos);
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

inline double sample(const std::map<std::string, double>& all, const std::string& key) {
  const auto it = all.find(key);
  if (it == all.end()) FAIL("no sample " << key);
  return it->second;
}

inline bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / program).c_str(), X_OK) == 0) return true;
  return false;
}

// Runs `promtool check metrics` on `text`: it passes when promtool exits 0
// and says nothing (no lint warning either). Skipped, with a warning, where
// promtool is not installed.
inline void check_with_promtool(const std::string& text) {
  if (!on_path("promtool")) {
    WARN("skipped: promtool is not installed (apt-get install prometheus); CI installs it");
    return;
  }
  const auto file = scratch_dir() / "metrics.txt";
  {
    std::ofstream out(file);
    out << text;
  }
  auto checked = start_program("promtool", {"check", "metrics"}, file);
  const int status = checked.wait();
  INFO("promtool said: " << checked.stdout_text() << checked.stderr_text());
  CHECK(status == 0);
  CHECK(checked.stdout_text().empty());
  fs::remove(file);
}

}  // namespace comet::test
