// Typed values: a JSON value read as a C++ type, and, when it does not
// convert, a message that names where and why:
//
//   value.samples[2].speed: "warp" is not one of "slow", "fast"
//
// comet-net reads the types whose shape it knows itself, in one pass:
// structs described with BOOST_DESCRIBE_STRUCT (public and inherited
// members), described enums (by name), std::optional, std::vector (and
// deque, list, set...), std::array, std::map / std::unordered_map with
// string keys, bool, integers, floating point, std::string and json::value
// / object / array / string. Everything else (a user's tag_invoke, other standard types) goes
// to Boost.JSON's value_to, and a failure there is reported at that value's
// path with the conversion's own reason.
//
// Described structs are read tolerantly, as protobuf and serde peers do:
// unknown keys are ignored, a missing or null std::optional member is
// empty, a missing required member is refused ("value.points: missing").
// strict_keys<T> opts a struct into refusing unknown keys.
//
// Typed handlers and typed sends use it; it never shows a library's
// internal error text.
#pragma once

#include <comet/errors.hpp>

#include <boost/describe/enumerators.hpp>
#include <boost/describe/members.hpp>
#include <boost/json/conversion.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>
#include <boost/mp11/algorithm.hpp>
#include <boost/system/system_error.hpp>

#include <array>
#include <cstddef>
#include <exception>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace comet {

namespace json = boost::json;

// Specialise as std::true_type for a described struct whose readers must
// refuse keys it does not have ("value.colour: unknown key; expected one
// of "x", "y"") instead of ignoring them:
//
//   template <> struct comet::strict_keys<point> : std::true_type {};
//
// It applies wherever that struct is read: a typed handler's value, a typed
// send's answer, a member of another struct.
template <class T>
struct strict_keys : std::false_type {};

namespace detail {

// "a string", "a number", ... for messages.
std::string_view kind_of(const json::value& v) noexcept;

// Where a value sits in what is being read: a chain of frames on the
// reader's stack, turned into text ("value.samples[2].speed") only for a
// message, so a value that converts costs no string.
struct value_path {
  static constexpr std::size_t no_index = static_cast<std::size_t>(-1);
  const value_path* parent = nullptr;
  std::string_view key;          // the root's name, a member's or a map's key
  std::size_t index = no_index;  // an array element's index
};
std::string to_string(const value_path& at);

// The messages, "<path>: <reason>".
std::string expected(const value_path& at, std::string_view what, const json::value& v);
std::string not_an_integer(const value_path& at, const json::value& v);  // a fraction, or out of range
std::string out_of_range(const value_path& at, const json::value& v);
std::string missing(const value_path& at);
std::string wrong_size(const value_path& at, std::size_t size, const json::array& a);
std::string unknown_key(const value_path& object, std::string_view key,
                        std::span<const char* const> keys);
std::string not_one_of(const value_path& at, const json::string& name,
                       std::span<const char* const> names);
std::string cannot_read(const value_path& at, const boost::system::error_code& ec);
std::string cannot_read(const value_path& at, std::string_view reason);

template <class T>
struct is_std_optional : std::false_type {};
template <class T>
struct is_std_optional<std::optional<T>> : std::true_type {};
template <class T>
struct is_std_array : std::false_type {};
template <class T, std::size_t N>
struct is_std_array<std::array<T, N>> : std::true_type {};

// A container filled element by element: std::vector, deque, list, set...
// (not a map, which is sequence-like too, of pairs with a const key).
template <class T>
concept growable_sequence =
    json::is_sequence_like<T>::value && !json::is_map_like<T>::value &&
    std::is_move_assignable_v<typename T::value_type> &&
    requires(T& t, typename T::value_type&& e) {
      t.clear();
      t.insert(t.end(), std::move(e));
    };
// std::map, std::unordered_map... with std::string keys.
template <class T>
concept string_map = json::is_map_like<T>::value && std::is_same_v<typename T::key_type, std::string>;

// A conversion of the user's own (tag_invoke), which Boost.JSON prefers to
// any other, so comet-net does too.
template <class T>
concept has_throwing_conversion =
    requires(const json::value& v) { tag_invoke(json::value_to_tag<T>{}, v); };
template <class T>
concept has_nonthrowing_conversion =
    requires(const json::value& v) { tag_invoke(json::try_value_to_tag<T>{}, v); };

// Boost.JSON's own tag_invoke for std::optional is not one: comet-net reads
// optionals itself.
template <class T>
constexpr bool is_user_converted =
    (has_throwing_conversion<T> || has_nonthrowing_conversion<T>) && !is_std_optional<T>::value;

template <class T>
constexpr bool is_described_struct =
    std::is_class_v<T> && boost::describe::has_describe_members<T>::value;
template <class T>
constexpr bool is_described_enum =
    std::is_enum_v<T> && boost::describe::has_describe_enumerators<T>::value;

// The names of a Boost.Describe list (members or enumerators).
template <class L>
struct names_of;
template <template <class...> class L, class... D>
struct names_of<L<D...>> {
  static constexpr std::array<const char*, sizeof...(D)> value{D::name...};
};

template <class T>
using members_of =
    boost::describe::describe_members<T, boost::describe::mod_public | boost::describe::mod_inherited>;

// Boost.JSON's conversion, its failure worded at `at`: the error_code's
// message, or the what() of the exception the conversion threw.
template <class T>
std::optional<T> delegate(const json::value& v, const value_path& at, std::string& why) {
  try {
    if constexpr (has_nonthrowing_conversion<T> && !has_throwing_conversion<T>) {
      auto r = json::try_value_to<T>(v);
      if (r) return std::move(*r);
      why = cannot_read(at, r.error());
      return std::nullopt;
    } else {
      return json::value_to<T>(v);
    }
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const boost::system::system_error& e) {
    why = cannot_read(at, e.code());  // what() would show Boost's source location
  } catch (const std::exception& e) {
    why = cannot_read(at, e.what());
  }
  return std::nullopt;
}

template <class T>
bool read(const json::value& v, T& out, const value_path& at, std::string& why);

// A new T read from `v`, for elements and for types without a default.
template <class T>
std::optional<T> read_new(const json::value& v, const value_path& at, std::string& why) {
  if constexpr (std::is_default_constructible_v<T> && !is_user_converted<T>) {
    std::optional<T> out(std::in_place);
    if (!read(v, *out, at, why)) return std::nullopt;
    return out;
  } else {
    return delegate<T>(v, at, why);
  }
}

template <class T>
bool read_struct(const json::object& o, T& out, const value_path& at, std::string& why) {
  using members = members_of<T>;
  constexpr auto& keys = names_of<members>::value;
  if constexpr (strict_keys<T>::value) {
    for (const auto& item : o) {
      bool known = false;
      for (const char* k : keys) known = known || item.key() == k;
      if (!known) {
        why = unknown_key(at, item.key(), keys);
        return false;
      }
    }
  }
  bool ok = true;
  boost::mp11::mp_for_each<members>([&](auto member) {
    if (!ok) return;
    auto& field = out.*member.pointer;
    using M = std::remove_cvref_t<decltype(field)>;
    const value_path here{&at, member.name};
    const json::value* item = o.if_contains(member.name);
    if (item) {
      ok = read(*item, field, here, why);
    } else if constexpr (is_std_optional<M>::value) {
      field.reset();
    } else {
      why = missing(here);
      ok = false;
    }
  });
  return ok;
}

template <class T>
bool read_enum(const json::value& v, T& out, const value_path& at, std::string& why) {
  using enumerators = boost::describe::describe_enumerators<T>;
  const json::string* name = v.if_string();
  if (!name) {
    why = expected(at, "a string", v);
    return false;
  }
  bool found = false;
  boost::mp11::mp_for_each<enumerators>([&](auto e) {
    if (!found && *name == e.name) {
      out = e.value;
      found = true;
    }
  });
  if (!found) why = not_one_of(at, *name, names_of<enumerators>::value);
  return found;
}

// Reads `v` into `out`; false with `why` ("<path>: <reason>") when it does
// not convert (then `out` may be partly written).
template <class T>
bool read(const json::value& v, T& out, const value_path& at, std::string& why) {
  if constexpr (is_std_optional<T>::value) {
    if (v.is_null()) {
      out.reset();
      return true;
    }
    auto item = read_new<typename T::value_type>(v, at, why);
    if (!item) return false;
    out = std::move(*item);
    return true;
  } else if constexpr (is_user_converted<T>) {
    auto converted = delegate<T>(v, at, why);
    if (!converted) return false;
    out = std::move(*converted);
    return true;
  } else if constexpr (std::is_same_v<T, json::value>) {
    out = v;
    return true;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_bool()) {
      why = expected(at, "a boolean", v);
      return false;
    }
    out = v.get_bool();
    return true;
  } else if constexpr (std::is_integral_v<T> || std::is_floating_point_v<T>) {
    if (!v.is_number()) {
      why = expected(at, std::is_integral_v<T> ? "an integer" : "a number", v);
      return false;
    }
    boost::system::error_code ec;
    out = v.to_number<T>(ec);  // an integer: only a whole double in range
    if (ec) why = std::is_integral_v<T> ? not_an_integer(at, v) : out_of_range(at, v);
    return !ec;
  } else if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, json::string>) {
    const json::string* s = v.if_string();
    if (!s) {
      why = expected(at, "a string", v);
      return false;
    }
    out.assign(s->data(), s->size());
    return true;
  } else if constexpr (std::is_same_v<T, json::object>) {
    const json::object* o = v.if_object();
    if (!o) {
      why = expected(at, "an object", v);
      return false;
    }
    out = *o;
    return true;
  } else if constexpr (std::is_same_v<T, json::array>) {
    const json::array* a = v.if_array();
    if (!a) {
      why = expected(at, "an array", v);
      return false;
    }
    out = *a;
    return true;
  } else if constexpr (growable_sequence<T> || is_std_array<T>::value) {
    const json::array* a = v.if_array();
    if (!a) {
      why = expected(at, "an array", v);
      return false;
    }
    if constexpr (is_std_array<T>::value) {
      if (a->size() != out.size()) {
        why = wrong_size(at, out.size(), *a);
        return false;
      }
    } else {
      out.clear();
      if constexpr (requires { out.reserve(a->size()); }) out.reserve(a->size());
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const value_path here{&at, {}, i};
      auto item = read_new<typename T::value_type>((*a)[i], here, why);
      if (!item) return false;
      if constexpr (is_std_array<T>::value)
        out[i] = std::move(*item);
      else
        out.insert(out.end(), std::move(*item));
    }
    return true;
  } else if constexpr (string_map<T>) {
    const json::object* o = v.if_object();
    if (!o) {
      why = expected(at, "an object", v);
      return false;
    }
    out.clear();
    for (const auto& entry : *o) {
      const value_path here{&at, entry.key()};
      auto item = read_new<typename T::mapped_type>(entry.value(), here, why);
      if (!item) return false;
      out.emplace(std::string(entry.key()), std::move(*item));
    }
    return true;
  } else if constexpr (is_described_struct<T>) {
    const json::object* o = v.if_object();
    if (!o) {
      why = expected(at, "an object", v);
      return false;
    }
    return read_struct(*o, out, at, why);
  } else if constexpr (is_described_enum<T>) {
    return read_enum(v, out, at, why);
  } else {
    auto converted = delegate<T>(v, at, why);
    if (!converted) return false;
    out = std::move(*converted);
    return true;
  }
}

}  // namespace detail

// `v` as a T, or comet::error(code) whose message begins with `what` and
// says which part of `v` (named `root`) did not convert and why.
template <class T>
T convert_to(const json::value& v, std::string_view root, errc code, std::string_view what) {
  using U = std::remove_cvref_t<T>;
  if constexpr (std::is_same_v<U, json::value>) {
    return v;
  } else {
    std::string why;
    auto converted = detail::read_new<U>(v, detail::value_path{nullptr, root}, why);
    if (!converted) throw error(code, std::string(what) + why);
    return std::move(*converted);
  }
}

}  // namespace comet
