// src/actor/message.cpp: the out-of-line parts of bastion/actor/message.hpp.
#include <bastion/actor/message.hpp>

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <typeinfo>

namespace bastion {

namespace detail {
std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(
      abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), &std::free);
  return (status == 0 && d) ? std::string(d.get()) : std::string(t.name());
}
} // namespace detail

reply_type_mismatch::reply_type_mismatch(const std::type_info& expected, const std::type_info& got)
    : std::logic_error(
          "bastion: reply type mismatch: the asker expects " + detail::type_name(expected)
          + " but the handler replied with " + detail::type_name(got)) {
}

} // namespace bastion
