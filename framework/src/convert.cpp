#include <comet/convert.hpp>

#include <cmath>

namespace comet::detail {

std::string_view kind_of(const json::value& v) noexcept {
  switch (v.kind()) {
    case json::kind::null: return "null";
    case json::kind::bool_: return "a boolean";
    case json::kind::int64:
    case json::kind::uint64: return "an integer";
    case json::kind::double_: return "a number with a fraction";
    case json::kind::string: return "a string";
    case json::kind::array: return "an array";
    case json::kind::object: return "an object";
  }
  return "a value";
}

namespace {

bool is_identifier(std::string_view key) {
  if (key.empty() || (key[0] >= '0' && key[0] <= '9')) return false;
  for (char c : key)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

void append(std::string& out, const value_path& at) {
  if (!at.parent) {
    out += at.key;
    return;
  }
  append(out, *at.parent);
  if (at.index != value_path::no_index) {
    out += '[' + std::to_string(at.index) + ']';
  } else if (is_identifier(at.key)) {
    out += '.';
    out += at.key;
  } else {  // a map key that would read as a path: value.names["a.b"]
    out += '[' + json::serialize(json::string_view(at.key.data(), at.key.size())) + ']';
  }
}

std::string quoted_list(std::span<const char* const> names) {
  std::string out;
  for (const char* name : names) {
    if (!out.empty()) out += ", ";
    out += json::serialize(json::string_view(name));
  }
  return out;
}

std::string at_path(const value_path& at, std::string_view reason) {
  return to_string(at) + ": " + std::string(reason);
}

}  // namespace

std::string to_string(const value_path& at) {
  std::string out;
  append(out, at);
  return out;
}

std::string expected(const value_path& at, std::string_view what, const json::value& v) {
  return at_path(at, "expected " + std::string(what) + ", got " + std::string(kind_of(v)));
}

std::string not_an_integer(const value_path& at, const json::value& v) {
  if (v.is_double() && !(std::isfinite(v.get_double()) && std::trunc(v.get_double()) == v.get_double()))
    return expected(at, "an integer", v);
  return out_of_range(at, v);
}

std::string out_of_range(const value_path& at, const json::value& v) {
  return at_path(at, json::serialize(v) + " is out of range");
}

std::string missing(const value_path& at) { return at_path(at, "missing"); }

std::string wrong_size(const value_path& at, std::size_t size, const json::array& a) {
  return at_path(at, "expected an array of " + std::to_string(size) + " values, got " +
                         std::to_string(a.size()));
}

std::string unknown_key(const value_path& object, std::string_view key,
                        std::span<const char* const> keys) {
  const value_path here{&object, key};
  return at_path(here, keys.empty() ? std::string("unknown key; expected no keys")
                                    : "unknown key; expected one of " + quoted_list(keys));
}

std::string not_one_of(const value_path& at, const json::string& name,
                       std::span<const char* const> names) {
  return at_path(at, json::serialize(name) + " is not one of " + quoted_list(names));
}

std::string cannot_read(const value_path& at, const boost::system::error_code& ec) {
  return at_path(at, "cannot be read as the type expected (" + ec.message() + ")");
}

std::string cannot_read(const value_path& at, std::string_view reason) {
  return at_path(at, reason);
}

}  // namespace comet::detail
