// Typed values: a JSON value read as a C++ type with Boost.JSON's
// conversions (boost::json::try_value_to: the standard types, tag_invoke
// overloads, and structs described with BOOST_DESCRIBE_STRUCT), and, when
// it does not convert, a message that names where and why:
//
//   value.x: expected a number, got a string
//
// Typed handlers and typed sends use it; it never shows a library's
// internal error text.
#pragma once

#include <comet/errors.hpp>

#include <boost/describe/members.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>
#include <boost/mp11/algorithm.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace comet {

namespace json = boost::json;

namespace detail {

// "a string", "a number", ... for messages.
std::string_view kind_of(const json::value& v) noexcept;

template <class T>
struct is_std_optional : std::false_type {};
template <class T>
struct is_std_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_std_vector : std::false_type {};
template <class T, class A>
struct is_std_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_string_map : std::false_type {};
template <class T, class C, class A>
struct is_string_map<std::map<std::string, T, C, A>> : std::true_type {};

inline std::string expected(std::string_view path, std::string_view what, const json::value& v) {
  return std::string(path) + ": expected " + std::string(what) + ", got " + std::string(kind_of(v));
}

// Where and why `v` does not convert to T, as far as the shape of T tells;
// nullopt when nothing is found (the caller then words the failure itself).
template <class T>
std::optional<std::string> why_not(const json::value& v, const std::string& path) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, json::value>) {
    return std::nullopt;
  } else if constexpr (std::is_same_v<U, bool>) {
    if (!v.is_bool()) return expected(path, "a boolean", v);
  } else if constexpr (std::is_integral_v<U>) {
    if (!v.is_number()) return expected(path, "an integer", v);
    if (v.is_double()) return expected(path, "an integer", v);
    if (!json::try_value_to<U>(v)) return path + ": " + json::serialize(v) + " is out of range";
  } else if constexpr (std::is_floating_point_v<U>) {
    if (!v.is_number()) return expected(path, "a number", v);
  } else if constexpr (std::is_same_v<U, std::string>) {
    if (!v.is_string()) return expected(path, "a string", v);
  } else if constexpr (is_std_optional<U>::value) {
    if (!v.is_null()) return why_not<typename U::value_type>(v, path);
  } else if constexpr (is_std_vector<U>::value) {
    if (!v.is_array()) return expected(path, "an array", v);
    const auto& a = v.get_array();
    for (std::size_t i = 0; i < a.size(); ++i)
      if (auto why = why_not<typename U::value_type>(a[i], path + "[" + std::to_string(i) + "]"))
        return why;
  } else if constexpr (is_string_map<U>::value) {
    if (!v.is_object()) return expected(path, "an object", v);
    for (const auto& [key, item] : v.get_object())
      if (auto why = why_not<typename U::mapped_type>(item, path + "." + std::string(key)))
        return why;
  } else if constexpr (boost::describe::has_describe_members<U>::value) {
    if (!v.is_object()) return expected(path, "an object", v);
    const auto& o = v.get_object();
    std::optional<std::string> found;
    using members = boost::describe::describe_members<U, boost::describe::mod_public |
                                                             boost::describe::mod_inherited>;
    boost::mp11::mp_for_each<members>([&](auto member) {
      if (found) return;
      using M = std::remove_cvref_t<decltype(std::declval<U&>().*member.pointer)>;
      const std::string at = path + "." + member.name;
      const auto* field = o.if_contains(member.name);
      if (!field) {
        if constexpr (!is_std_optional<M>::value) found = at + ": missing";
        return;
      }
      found = why_not<M>(*field, at);
    });
    return found;
  }
  return std::nullopt;
}

}  // namespace detail

// `v` as a T, or comet::error(code) whose message begins with `what` and
// says which part of `v` (named `root`) did not convert and why.
template <class T>
T convert_to(const json::value& v, std::string_view root, errc code, std::string_view what) {
  if constexpr (std::is_same_v<std::remove_cvref_t<T>, json::value>) {
    return v;
  } else {
    auto converted = json::try_value_to<std::remove_cvref_t<T>>(v);
    if (converted) return std::move(*converted);
    auto why = detail::why_not<T>(v, std::string(root));
    throw error(code, std::string(what) +
                          (why ? *why
                               : std::string(root) + ": cannot be read as the type expected (" +
                                     converted.error().message() + ")"));
  }
}

}  // namespace comet
