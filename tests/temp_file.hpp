// A file under the temp directory with a name no parallel run shares,
// removed when the test ends however it ends.
#pragma once

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string_view>
#include <system_error>

namespace comet::test {

class temp_file {
 public:
  explicit temp_file(std::string_view text, std::string_view extension = ".toml") {
    std::random_device random;
    std::ostringstream name;
    name << "comet_test_config_" << std::hex << random() << random() << extension;
    path_ = std::filesystem::temp_directory_path() / name.str();
    std::ofstream(path_, std::ios::binary) << text;
  }
  temp_file(const temp_file&) = delete;
  temp_file& operator=(const temp_file&) = delete;
  ~temp_file() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }

  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace comet::test
