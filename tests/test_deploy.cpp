// The deployment's contract (issue 20, item 5). These machines have no
// container engine and no cluster, so the image is not built here; what
// deploy/ relies on is tested instead: the manifests' kinds, ports and
// probes; the Dockerfile's build commands (the README's) and its runtime
// packages (what the binaries link); comet-host as an unprivileged user with
// the ConfigMap's config, answering the readiness probe, and exiting cleanly
// on SIGTERM within shutdown_timeout.
#include <comet/comet.hpp>

#include "processes.hpp"
#include "support.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

using namespace comet;
using namespace comet::test;

namespace {

const std::string source_dir = COMET_SOURCE_DIR;

YAML::Node manifest(const std::string& name) {
  return YAML::LoadFile(source_dir + "/deploy/kubernetes/" + name);
}

std::vector<std::string> strings(const YAML::Node& list) {
  std::vector<std::string> out;
  for (const auto& n : list) out.push_back(n.as<std::string>());
  return out;
}

config configmap_config() {
  const YAML::Node map = manifest("configmap.yaml");
  return parse_config(map["data"]["comet.toml"].as<std::string>(), "configmap.yaml:comet.toml");
}

// The lines of a file, with backslash continuations joined.
std::vector<std::string> dockerfile_lines() {
  std::istringstream in(read_file(source_dir + "/deploy/Dockerfile"));
  std::vector<std::string> out;
  std::string joined;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.front() == '#') continue;
    if (!line.empty() && line.back() == '\\') {
      joined += line.substr(0, line.size() - 1);
      continue;
    }
    out.push_back(joined + line);
    joined.clear();
  }
  return out;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t");
  const auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// The commands of README.md's sh blocks, split at && and newlines.
std::set<std::string> readme_commands() {
  const std::string readme = read_file(source_dir + "/README.md");
  std::set<std::string> out;
  std::size_t at = 0;
  while ((at = readme.find("```sh\n", at)) != std::string::npos) {
    const auto end = readme.find("```", at + 6);
    std::istringstream block(readme.substr(at + 6, end - at - 6));
    for (std::string line; std::getline(block, line);) {
      std::size_t from = 0;
      for (;;) {
        const auto amp = line.find("&&", from);
        out.insert(trim(line.substr(from, amp == std::string::npos ? amp : amp - from)));
        if (amp == std::string::npos) break;
        from = amp + 2;
      }
    }
    at = end + 3;
  }
  // Inline commands the README gives in its prose, `cmake --build build --target comet-send`.
  const std::regex inline_command("`(cmake --build build --target [a-z-]+)`");
  for (std::sregex_iterator it(readme.begin(), readme.end(), inline_command), e; it != e; ++it)
    out.insert((*it)[1]);
  return out;
}

// The Debian packages whose libraries `binary` links (ldd, then dpkg -S).
std::set<std::string> linked_packages(const std::string& binary) {
  const std::string script =
      "for f in $(ldd '" + binary + "' | awk '{print $3}' | grep /); do "
      "n=$(basename \"$f\"); (dpkg -S \"/usr/lib/x86_64-linux-gnu/$n\" || "
      "dpkg -S \"/lib/x86_64-linux-gnu/$n\") 2>/dev/null | head -1; "
      "done | cut -d: -f1 | sort -u";
  auto p = start_program("sh", {"-c", script});
  REQUIRE(p.wait() == 0);
  std::istringstream lines(p.stdout_text());
  std::set<std::string> out;
  // A sanitizer build (tools/sanitize) also links its runtime: not the product's.
  const std::regex sanitizer_runtime("lib(a|ub|t|l)san[0-9]*");
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && !std::regex_match(line, sanitizer_runtime)) out.insert(line);
  return out;
}

}  // namespace

TEST_CASE("the Kubernetes manifests have the kinds, ports and probes the deployment needs", "[deploy]") {
  const config cfg = configmap_config();
  CHECK(cfg.host == endpoint{"0.0.0.0", 65432});

  const YAML::Node deployment = manifest("deployment.yaml");
  CHECK(deployment["apiVersion"].as<std::string>() == "apps/v1");
  CHECK(deployment["kind"].as<std::string>() == "Deployment");
  const YAML::Node pod = deployment["spec"]["template"];
  CHECK(deployment["spec"]["selector"]["matchLabels"]["app"].as<std::string>() ==
        pod["metadata"]["labels"]["app"].as<std::string>());
  const YAML::Node annotations = pod["metadata"]["annotations"];
  CHECK(annotations["prometheus.io/scrape"].as<std::string>() == "true");
  CHECK(annotations["prometheus.io/port"].as<std::string>() == "9464");
  CHECK(annotations["prometheus.io/path"].as<std::string>() == "/metrics");
  CHECK(pod["spec"]["securityContext"]["runAsNonRoot"].as<bool>());
  CHECK(pod["spec"]["securityContext"]["runAsUser"].as<int>() == 10001);

  REQUIRE(pod["spec"]["containers"].size() == 1);
  const YAML::Node container = pod["spec"]["containers"][0];
  std::map<std::string, int> ports;
  for (const auto& p : container["ports"]) ports[p["name"].as<std::string>()] = p["containerPort"].as<int>();
  CHECK(ports["comet"] == cfg.host.port);
  CHECK(ports["metrics"] == 9464);
  REQUIRE(cfg.framework.metrics_listen);
  CHECK(cfg.framework.metrics_listen->port == 9464);

  // Ready while the host answers health "serving" (comet-send exits 0 only then).
  const auto probe = strings(container["readinessProbe"]["exec"]["command"]);
  REQUIRE(probe.size() >= 5);
  CHECK(probe[0] == "comet-send");
  CHECK(probe[1] == "--to");
  CHECK(probe[2] == "127.0.0.1:" + std::to_string(cfg.host.port));
  CHECK(probe[3] == "--action");
  CHECK(probe[4] == "health");
  CHECK(container["livenessProbe"]["tcpSocket"]["port"].as<std::string>() == "comet");

  // The grace period covers the preStop pause and the whole drain.
  const auto pause = strings(container["lifecycle"]["preStop"]["exec"]["command"]);
  REQUIRE(pause.size() == 2);
  CHECK(pause[0] == "sleep");
  const auto grace = std::chrono::seconds(pod["spec"]["terminationGracePeriodSeconds"].as<int>());
  CHECK(grace > std::chrono::seconds(std::stoi(pause[1])) + cfg.framework.shutdown_timeout);

  REQUIRE(container["volumeMounts"].size() == 1);
  CHECK(container["volumeMounts"][0]["mountPath"].as<std::string>() == "/etc/comet");
  CHECK(pod["spec"]["volumes"][0]["configMap"]["name"].as<std::string>() ==
        manifest("configmap.yaml")["metadata"]["name"].as<std::string>());

  const YAML::Node service = manifest("service.yaml");
  CHECK(service["kind"].as<std::string>() == "Service");
  CHECK(service["spec"]["clusterIP"].as<std::string>() == "None");  // headless: one address per pod
  CHECK(service["spec"]["selector"]["app"].as<std::string>() ==
        pod["metadata"]["labels"]["app"].as<std::string>());
  CHECK(service["spec"]["ports"][0]["port"].as<int>() == cfg.host.port);
  CHECK(service["spec"]["ports"][0]["targetPort"].as<std::string>() == "comet");

  // The image's own config is the ConfigMap's.
  const config image = load_config(source_dir + "/deploy/comet.toml");
  CHECK(image.host == cfg.host);
  CHECK(image.framework == cfg.framework);
}

TEST_CASE("the Dockerfile builds with the README's commands and installs what the binaries link",
          "[deploy]") {
  const auto lines = dockerfile_lines();
  const auto readme = readme_commands();
  std::vector<std::string> from, build_runs, runtime_runs;
  std::string entrypoint, stopsignal, user;
  for (const auto& line : lines) {
    const auto space = line.find(' ');
    const std::string word = line.substr(0, space), rest = trim(line.substr(space + 1));
    if (word == "FROM") from.push_back(rest);
    if (word == "RUN") (from.size() == 1 ? build_runs : runtime_runs).push_back(rest);
    if (word == "ENTRYPOINT") entrypoint = rest;
    if (word == "STOPSIGNAL") stopsignal = rest;
    if (word == "USER") user = rest;
  }
  REQUIRE(from.size() == 2);
  CHECK(from[0].rfind("debian:12", 0) == 0);
  CHECK(from[1].rfind("debian:12", 0) == 0);
  REQUIRE_FALSE(build_runs.empty());
  for (const auto& run : build_runs) {
    CAPTURE(run);
    CHECK(readme.count(run) == 1);
  }
  CHECK(entrypoint == R"(["comet-host", "--config", "/etc/comet/comet.toml"])");
  CHECK(stopsignal == "SIGTERM");
  CHECK(user == "10001:10001");

  std::string installed;
  for (const auto& run : runtime_runs)
    if (run.find("apt-get install") != std::string::npos) installed = run;
  REQUIRE_FALSE(installed.empty());
  std::set<std::string> listed;
  std::istringstream words(installed);
  for (std::string w; words >> w;) listed.insert(w);
  for (const char* program : {"comet-host", "comet-send"}) {
    const auto needed = linked_packages(std::string(COMET_BIN_DIR) + "/" + program);
    CHECK(needed.count("libc6") == 1);  // the lookup works
    for (const auto& package : needed) {
      CAPTURE(program, package);
      CHECK(listed.count(package) == 1);
    }
  }
}

TEST_CASE("comet-host runs unprivileged on the ConfigMap's config, is ready by the probe and stops on SIGTERM",
          "[deploy][integration]") {
  // Copies anyone may read and run: the build tree may sit under /root.
  const auto dir = scratch_dir() / "deploy";
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  const auto host_binary = dir / "comet-host";
  fs::copy_file(std::string(COMET_BIN_DIR) + "/comet-host", host_binary,
                fs::copy_options::overwrite_existing);
  const auto config_file = dir / "comet.toml";
  {
    std::ofstream out(config_file);
    out << manifest("configmap.yaml")["data"]["comet.toml"].as<std::string>();
  }
  const config cfg = configmap_config();

  // As the image's user; on loopback here instead of the config's 0.0.0.0.
  process host = start_program("setpriv", {"--reuid=10001", "--regid=10001", "--clear-groups",
                                           host_binary.string(), "--config", config_file.string(),
                                           "--host", "127.0.0.5", "--port", "0",
                                           "--metrics-listen", "127.0.0.5:0"});
  struct reap {
    process& p;
    bool done = false;
    ~reap() {
      if (!done) {
        ::kill(p.pid, SIGKILL);
        p.wait();
      }
    }
  } cleanup{host};
  std::string address;
  REQUIRE(wait_until([&] {
    const std::string log = host.stderr_text();
    const auto at = log.find("listening on ");
    if (at == std::string::npos) return false;
    const auto end = log.find_first_of(" \n", at + 13);
    if (end == std::string::npos) return false;
    address = log.substr(at + 13, end - at - 13);
    return true;
  }));
  const std::string status = read_file("/proc/" + std::to_string(host.pid) + "/status");
  CHECK(std::regex_search(status, std::regex("\nUid:\\s+10001\\s+10001")));

  // The readiness probe, as the Deployment runs it (at this address).
  auto probe = strings(manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
                               ["readinessProbe"]["exec"]["command"]);
  probe.erase(probe.begin());
  probe[1] = address;
  CHECK(run_cli("comet-send", probe).status == 0);

  const auto stopping = std::chrono::steady_clock::now();
  ::kill(host.pid, SIGTERM);
  const int exit_status = host.wait(cfg.framework.shutdown_timeout + std::chrono::seconds(5));
  cleanup.done = true;
  CHECK(exit_status == 0);
  CHECK(std::chrono::steady_clock::now() - stopping < cfg.framework.shutdown_timeout);
  CHECK(run_cli("comet-send", probe).status != 0);
}
