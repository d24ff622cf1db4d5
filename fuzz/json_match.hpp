// Structural JSON equality for round-trip checks. Doubles may differ in the
// last digits: Boost.JSON 1.81's parser is not correctly rounded, so text
// that names a double exactly can still parse a few ulps away from it.
#pragma once

#include <boost/json/value.hpp>

#include <cmath>

namespace comet::fuzz {

inline bool has_non_finite(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::double_: return !std::isfinite(v.get_double());
    case boost::json::kind::array:
      for (const auto& e : v.get_array())
        if (has_non_finite(e)) return true;
      return false;
    case boost::json::kind::object:
      for (const auto& m : v.get_object())
        if (has_non_finite(m.value())) return true;
      return false;
    default: return false;
  }
}

inline bool doubles_match(double a, double b) {
  if (a == b) return std::signbit(a) == std::signbit(b);
  return std::fabs(a - b) <= 1e-14 * std::fmax(std::fabs(a), std::fabs(b));
}

inline bool json_match(const boost::json::value& a, const boost::json::value& b) {
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case boost::json::kind::double_: return doubles_match(a.get_double(), b.get_double());
    case boost::json::kind::array: {
      const auto& x = a.get_array();
      const auto& y = b.get_array();
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!json_match(x[i], y[i])) return false;
      return true;
    }
    case boost::json::kind::object: {
      const auto& x = a.get_object();
      const auto& y = b.get_object();
      if (x.size() != y.size()) return false;
      for (const auto& m : x) {
        const auto* other = y.if_contains(m.key());
        if (!other || !json_match(m.value(), *other)) return false;
      }
      return true;
    }
    default: return a == b;
  }
}

}  // namespace comet::fuzz
