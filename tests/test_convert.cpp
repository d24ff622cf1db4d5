// Typed values (issue 14, item 5): comet::convert_to reads described
// structs tolerantly, strict_keys structs strictly, enums by name, and names
// the path of the first value that does not convert; what value_from writes
// reads back, in comet-net and in Python's json. Socket-free; the same rules
// over real sockets are in test_typed.cpp.
#include <comet/convert.hpp>

#include "processes.hpp"
#include "support.hpp"
#include "temp_file.hpp"

#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>
#include <boost/json/value_from.hpp>

#include <deque>
#include <list>
#include <set>
#include <stdexcept>
#include <unordered_map>

using namespace comet;
using namespace comet::test;

namespace probe {

BOOST_DEFINE_ENUM_CLASS(speed, slow, fast)

struct sample {
  double at = 0;
  probe::speed speed = probe::speed::slow;
};
BOOST_DESCRIBE_STRUCT(sample, (), (at, speed))

struct run {
  std::string name;
  std::vector<sample> samples;
  std::optional<std::string> note;
  std::optional<int> retries;
};
BOOST_DESCRIBE_STRUCT(run, (), (name, samples, note, retries))

struct exact_point {
  int x = 0;
  int y = 0;
};
BOOST_DESCRIBE_STRUCT(exact_point, (), (x, y))

// Strict inside, tolerant outside.
struct shape {
  exact_point origin;
  std::map<std::string, double> sizes;
};
BOOST_DESCRIBE_STRUCT(shape, (), (origin, sizes))

struct base_record {
  std::string id;
};
BOOST_DESCRIBE_STRUCT(base_record, (), (id))
struct derived_record : base_record {
  int version = 0;
};
BOOST_DESCRIBE_STRUCT(derived_record, (base_record), (version))

// A conversion comet-net cannot see into: the user's own tag_invoke.
struct interval {
  int start = 0, end = 0;
};
interval tag_invoke(const json::value_to_tag<interval>&, const json::value& v) {
  const auto& a = v.as_array();  // throws Boost's system_error for a non-array
  interval i{static_cast<int>(a.at(0).to_number<int>()), static_cast<int>(a.at(1).to_number<int>())};
  if (i.end < i.start) throw std::invalid_argument("end: before start");
  return i;
}
void tag_invoke(const json::value_from_tag&, json::value& out, const interval& i) {
  out = json::array{i.start, i.end};
}

// The non-throwing form, answering an error_code.
struct celsius {
  double degrees = 0;
};
json::result<celsius> tag_invoke(const json::try_value_to_tag<celsius>&, const json::value& v) {
  if (!v.is_number() || v.to_number<double>() < -273.15) return make_error_code(json::error::not_exact);
  return celsius{v.to_number<double>()};
}

// Described, but its own tag_invoke wins, as it does in Boost.JSON.
struct tagged {
  int n = 0;
};
BOOST_DESCRIBE_STRUCT(tagged, (), (n))
tagged tag_invoke(const json::value_to_tag<tagged>&, const json::value& v) {
  return tagged{static_cast<int>(v.to_number<int>())};
}

struct schedule {
  std::vector<interval> slots;
  std::optional<celsius> limit;
};
BOOST_DESCRIBE_STRUCT(schedule, (), (slots, limit))

}  // namespace probe

template <>
struct comet::strict_keys<probe::exact_point> : std::true_type {};

namespace {

template <class T>
T read_as(const json::value& v) {
  return convert_to<T>(v, "value", errc::bad_request, "");
}

// The message convert_to<T> refuses `v` with.
template <class T>
std::string refusal(const json::value& v) {
  const auto e = error_thrown_by([&] { read_as<T>(v); });
  CHECK(e.code() == errc::bad_request);
  CHECK_THAT(e.what(), !Catch::Contains("boost") && !Catch::Contains(".hpp"));
  return e.what();
}

}  // namespace

TEST_CASE("a described struct is read tolerantly", "[unit][typed]") {
  // A newer peer's extra key is ignored; a Python peer's omitted optional is empty.
  const auto r = read_as<probe::run>(json::parse(
      R"({"name": "r1", "samples": [{"at": 1, "speed": "fast", "gain": 3}], "firmware": "2.1"})"));
  CHECK(r.name == "r1");
  REQUIRE(r.samples.size() == 1);
  CHECK(r.samples[0].at == 1);
  CHECK(r.samples[0].speed == probe::speed::fast);
  CHECK_FALSE(r.note);
  CHECK_FALSE(r.retries);
  // null is empty too; a value is read.
  const auto with = read_as<probe::run>(json::parse(R"({"name": "", "samples": [], "note": null, "retries": 2})"));
  CHECK_FALSE(with.note);
  CHECK(with.retries == 2);
  // A required member may not be left out, nor be null.
  CHECK(refusal<probe::run>(json::parse(R"({"name": "r1"})")) == "value.samples: missing");
  CHECK(refusal<probe::run>(json::parse(R"({"name": null, "samples": []})")) ==
        "value.name: expected a string, got null");
  // A default member initializer does not make a member optional.
  CHECK(refusal<probe::exact_point>(json::parse(R"({"x": 1})")) == "value.y: missing");
  // Inherited members are members.
  const auto d = read_as<probe::derived_record>(json::parse(R"({"id": "a", "version": 3})"));
  CHECK(d.id == "a");
  CHECK(d.version == 3);
  CHECK(refusal<probe::derived_record>(json::parse(R"({"version": 3})")) == "value.id: missing");
}

TEST_CASE("a strict_keys struct refuses an unknown key, naming it and the keys allowed",
          "[unit][typed]") {
  CHECK(read_as<probe::exact_point>(json::parse(R"({"x": 1, "y": 2})")).y == 2);
  CHECK(refusal<probe::exact_point>(json::parse(R"({"x": 1, "y": 2, "z": 3})")) ==
        R"(value.z: unknown key; expected one of "x", "y")");
  // A misspelt key is named before the member it leaves missing.
  CHECK(refusal<probe::exact_point>(json::parse(R"({"x": 1, "why": 2})")) ==
        R"(value.why: unknown key; expected one of "x", "y")");
  // Strictness is the struct's own: the tolerant struct around it still ignores keys.
  const auto s = read_as<probe::shape>(json::parse(R"({"origin": {"x": 1, "y": 2}, "sizes": {}, "new": 1})"));
  CHECK(s.origin.x == 1);
  CHECK(refusal<probe::shape>(json::parse(R"({"origin": {"x": 1, "y": 2, "z": 0}, "sizes": {}})")) ==
        R"(value.origin.z: unknown key; expected one of "x", "y")");
}

TEST_CASE("enums are read by name, naming the path and the names allowed", "[unit][typed]") {
  CHECK(read_as<probe::speed>("fast") == probe::speed::fast);
  const auto samples = json::parse(R"({"name": "r", "samples": [
      {"at": 0, "speed": "slow"}, {"at": 1, "speed": "fast"}, {"at": 2, "speed": "warp"}]})");
  CHECK(refusal<probe::run>(samples) == R"(value.samples[2].speed: "warp" is not one of "slow", "fast")");
  CHECK(refusal<probe::sample>(json::parse(R"({"at": 0, "speed": 1})")) ==
        "value.speed: expected a string, got an integer");
  // Written by name as well, so what comet-net writes it reads.
  CHECK(json::value_from(probe::sample{1.5, probe::speed::fast}) ==
        json::parse(R"({"at": 1.5, "speed": "fast"})"));
  // A value without a name is written as its number, which reading refuses.
  const json::value unnamed = json::value_from(static_cast<probe::speed>(7));
  CHECK(unnamed == 7);
  CHECK(refusal<probe::speed>(unnamed) == "value: expected a string, got an integer");
}

TEST_CASE("integers refuse a fraction or a value out of range", "[unit][typed]") {
  CHECK(refusal<int>(2.5) == "value: expected an integer, got a number with a fraction");
  CHECK(read_as<int>(2.0) == 2);  // a whole number is an integer, however it is written
  CHECK(refusal<std::uint8_t>(300) == "value: 300 is out of range");
  CHECK(refusal<unsigned>(-1) == "value: -1 is out of range");
  CHECK(refusal<int>(1e30) == "value: 1E30 is out of range");
  CHECK(refusal<probe::exact_point>(json::parse(R"({"x": 1.5, "y": 0})")) ==
        "value.x: expected an integer, got a number with a fraction");
  CHECK(refusal<int>("1") == "value: expected an integer, got a string");
  CHECK(refusal<double>(true) == "value: expected a number, got a boolean");
  CHECK(read_as<double>(3) == 3.0);
  CHECK(refusal<bool>(1) == "value: expected a boolean, got an integer");
}

TEST_CASE("maps, arrays and optionals name the element that does not convert", "[unit][typed]") {
  using sizes = std::map<std::string, double>;
  CHECK(read_as<sizes>(json::parse(R"({"a": 1, "b": 2.5})")) == sizes{{"a", 1}, {"b", 2.5}});
  CHECK(refusal<sizes>(json::parse(R"({"a": 1, "b": "wide"})")) ==
        "value.b: expected a number, got a string");
  // A key that would read as a path is quoted.
  CHECK(refusal<std::unordered_map<std::string, int>>(json::parse(R"({"a.b": null})")) ==
        R"(value["a.b"]: expected an integer, got null)");
  CHECK(refusal<probe::shape>(json::parse(R"({"origin": {"x": 0, "y": 0}, "sizes": []})")) ==
        "value.sizes: expected an object, got an array");

  using vector = std::vector<std::optional<int>>;
  CHECK(read_as<vector>(json::parse("[1, null, 3]")) == vector{1, std::nullopt, 3});
  CHECK(refusal<vector>(json::parse(R"([1, null, "3"])")) == "value[2]: expected an integer, got a string");
  CHECK(read_as<std::vector<bool>>(json::parse("[true, false]")) == std::vector<bool>{true, false});
  // Other standard containers are read element by element too, tolerantly.
  CHECK(read_as<std::list<probe::sample>>(json::parse(R"([{"at": 1, "speed": "fast", "new": 0}])"))
            .front()
            .speed == probe::speed::fast);
  CHECK(read_as<std::deque<std::string>>(json::parse(R"(["a", "b"])")).back() == "b");
  CHECK(read_as<std::set<int>>(json::parse("[3, 1, 3]")) == std::set<int>{1, 3});
  CHECK(refusal<std::set<int>>(json::parse("[3, true]")) == "value[1]: expected an integer, got a boolean");

  using triple = std::array<int, 3>;
  CHECK(read_as<triple>(json::parse("[1, 2, 3]")) == triple{1, 2, 3});
  CHECK(refusal<triple>(json::parse("[1, 2]")) == "value: expected an array of 3 values, got 2");
  CHECK(refusal<std::vector<std::vector<int>>>(json::parse("[[1], [2, {}]]")) ==
        "value[1][1]: expected an integer, got an object");

  CHECK(read_as<json::value>(json::parse(R"({"any": [1]})")) == json::parse(R"({"any": [1]})"));
  CHECK(refusal<json::object>(json::array{}) == "value: expected an object, got an array");
}

TEST_CASE("a conversion of the user's own is refused at its path with its reason", "[unit][typed]") {
  const auto s = read_as<probe::schedule>(json::parse(R"({"slots": [[1, 2], [3, 4]], "limit": 20})"));
  REQUIRE(s.slots.size() == 2);
  CHECK(s.slots[1].end == 4);
  CHECK(s.limit->degrees == 20);
  // The exception's what().
  CHECK(refusal<probe::schedule>(json::parse(R"({"slots": [[1, 2], [4, 3]]})")) ==
        "value.slots[1]: end: before start");
  CHECK(refusal<probe::schedule>(json::parse(R"({"slots": ["9-5"]})")) ==
        "value.slots[0]: array required");  // Boost.JSON's as_array() throws std::invalid_argument
  // A Boost system_error (from to_number): its code's message, not its source location.
  CHECK(refusal<probe::schedule>(json::parse(R"({"slots": [["9", 5]]})")) ==
        "value.slots[0]: cannot be read as the type expected (" +
            make_error_code(json::error::not_number).message() + ")");
  // The non-throwing form: the error_code's message.
  const auto cold = refusal<probe::schedule>(json::parse(R"({"slots": [], "limit": -300})"));
  CHECK(cold == "value.limit: cannot be read as the type expected (" +
                    make_error_code(json::error::not_exact).message() + ")");
  // A described struct's own tag_invoke is used, not its description.
  CHECK(read_as<probe::tagged>(7).n == 7);
}

TEST_CASE("a described struct written by comet reads back, in comet and in Python's json",
          "[unit][typed]") {
  const probe::run written{"r1", {{0.5, probe::speed::fast}}, std::nullopt, 3};
  const std::string text = json::serialize(json::value_from(written));
  // An empty optional is written as null, its key kept (Python: None).
  CHECK(text == R"({"name":"r1","samples":[{"at":5E-1,"speed":"fast"}],"note":null,"retries":3})");
  const auto back = read_as<probe::run>(json::parse(text));
  CHECK(back.name == "r1");
  CHECK(back.samples[0].at == 0.5);
  CHECK(back.samples[0].speed == probe::speed::fast);
  CHECK_FALSE(back.note);
  CHECK(back.retries == 3);

  // Python's json reads it as COMET would, and answers the way a Python peer
  // writes: its own extra key, the None member left out.
  temp_file input(text, ".json");
  auto python = start_program(
      "python3",
      {"-c",
       "import json, sys\n"
       "d = json.load(sys.stdin)\n"
       "assert d['note'] is None and d['samples'][0] == {'at': 0.5, 'speed': 'fast'}, d\n"
       "d['retries'] += 1\n"
       "d['sent_by'] = 'python'\n"
       "del d['note']\n"
       "print(json.dumps(d))\n"},
      input.path());
  const int status = python.wait();
  INFO(python.stderr_text());
  REQUIRE(status == 0);
  const auto answered = read_as<probe::run>(json::parse(python.stdout_text()));
  CHECK(answered.name == "r1");
  CHECK(answered.retries == 4);
  CHECK_FALSE(answered.note);
  CHECK(answered.samples[0].speed == probe::speed::fast);
}
