// bastion/actor/match.hpp: bastion::match (an ordered list of handlers by type and kind with a
// mandatory fallback) and bastion::handlers (the typed handler-chain alternative).
#pragma once

#include <bastion/actor/message.hpp>

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace bastion {

/// The mandatory last argument of match(): runs when no handler matched.
template <class F>
struct otherwise_t {
  F fn;
};

/// Wraps the fallback of match(): a callable taking `message&&` (it may keep, forward or
/// drop the message; dropping an ask tells its asker no_reply).
template <class F>
otherwise_t<std::decay_t<F>> otherwise(F&& f) {
  return {std::forward<F>(f)};
}

namespace detail {

template <class T>
struct is_otherwise : std::false_type {};
template <class F>
struct is_otherwise<otherwise_t<F>> : std::true_type {};

template <class T>
struct is_question : std::false_type {};
template <class T>
struct is_question<question<T>> : std::true_type {
  using value_type = T;
};
template <class T>
struct is_broadcast : std::false_type {};
template <class T>
struct is_broadcast<broadcast<T>> : std::true_type {
  using value_type = T;
};

/// The single parameter of a non-generic callable's operator() or of a function pointer.
template <class M>
struct call_signature {
  static constexpr bool ok = false;
};
#define BASTION_DETAIL_CALL_SIG(QUALS)                                                             \
  template <class C, class R, class A>                                                             \
  struct call_signature<R (C::*)(A) QUALS> {                                                       \
    static constexpr bool ok = true;                                                               \
    using arg = A;                                                                                 \
  };
BASTION_DETAIL_CALL_SIG()
BASTION_DETAIL_CALL_SIG(const)
BASTION_DETAIL_CALL_SIG(noexcept)
BASTION_DETAIL_CALL_SIG(const noexcept)
BASTION_DETAIL_CALL_SIG(&)
BASTION_DETAIL_CALL_SIG(const&)
#undef BASTION_DETAIL_CALL_SIG
template <class R, class A>
struct call_signature<R (*)(A)> {
  static constexpr bool ok = true;
  using arg = A;
};
template <class R, class A>
struct call_signature<R (*)(A) noexcept> {
  static constexpr bool ok = true;
  using arg = A;
};

template <class F>
auto call_signature_of() {
  if constexpr (requires { &F::operator(); }) {
    return call_signature<decltype(&F::operator())>{};
  } else if constexpr (std::is_pointer_v<F>) {
    return call_signature<F>{};
  } else {
    return call_signature<void>{};
  }
}

/// What a match() handler handles: deduced from its parameter.
///   question<T> (by value or &&)        -> asks of T
///   broadcast<T> (by value or const&)   -> broadcasts of T
///   T, const T&, T&&, T&                -> tells of T
template <class H>
struct handler_info {
  using sig = decltype(call_signature_of<H>());
  static_assert(
      sig::ok,
      "bastion::match: each handler must be a callable with exactly one parameter of a concrete "
      "type: bastion::question<T>, bastion::broadcast<T> const&, T or const T& (generic lambdas "
      "and overload sets cannot be matched)");
  using arg = typename sig::arg;
  using bare = std::remove_cvref_t<arg>;
  static_assert(
      !std::is_same_v<bare, message>,
      "bastion::match: a handler taking bastion::message is a fallback: wrap it in "
      "bastion::otherwise(...) and put it last");
  static constexpr message_kind kind = is_question<bare>::value    ? message_kind::ask
                                       : is_broadcast<bare>::value ? message_kind::broadcast
                                                                   : message_kind::tell;
  static_assert(
      !(is_question<bare>::value && std::is_lvalue_reference_v<arg>),
      "bastion::match: take bastion::question<T> by value or by &&");
  using value_type = std::conditional_t<
      is_question<bare>::value,
      typename is_question<bare>::value_type,
      std::conditional_t<is_broadcast<bare>::value, typename is_broadcast<bare>::value_type, bare>>;

  template <class F>
  static decltype(auto) call(F& f, message& m) {
    void* data = m.get()->data();
    if constexpr (kind == message_kind::ask) {
      return f(question<value_type>{std::move(m)});
    } else if constexpr (kind == message_kind::broadcast) {
      return f(broadcast<value_type>{*static_cast<std::shared_ptr<const value_type>*>(data)});
    } else if constexpr (
        std::is_lvalue_reference_v<arg> && !std::is_const_v<std::remove_reference_t<arg>>) {
      return f(*static_cast<value_type*>(data));
    } else {
      return f(std::move(*static_cast<value_type*>(data)));
    }
  }
};

/// A handler bound to a kind and type explicitly (the handler chain's entries).
template <message_kind K, class T, class F>
struct typed_handler {
  F fn;
};
template <message_kind K, class T, class F>
struct handler_info<typed_handler<K, T, F>> {
  static constexpr message_kind kind = K;
  using value_type = T;
  template <class H>
  static void call(H& h, message& m) {
    void* data = m.get()->data();
    if constexpr (K == message_kind::ask) {
      h.fn(question<T>{std::move(m)});
    } else if constexpr (K == message_kind::broadcast) {
      const broadcast<T> b{*static_cast<std::shared_ptr<const T>*>(data)};
      h.fn(b);
    } else {
      h.fn(std::move(*static_cast<T*>(data)));
    }
  }
};

template <class H>
using handler_result_t =
    decltype(handler_info<H>::call(std::declval<H&>(), std::declval<message&>()));

template <class R, std::size_t I, class Tuple>
R dispatch(message& m, Tuple& hs) {
  constexpr std::size_t last = std::tuple_size_v<Tuple> - 1;
  auto& h = std::get<I>(hs);
  if constexpr (I == last) {
    return static_cast<R>(h.fn(std::move(m)));
  } else {
    using info = handler_info<std::remove_cvref_t<decltype(h)>>;
    if (m.get()->kind == info::kind && *m.get()->type == typeid(typename info::value_type)) {
      return static_cast<R>(info::call(h, m));
    }
    return dispatch<R, I + 1>(m, hs);
  }
}

template <class... Hs>
struct match_traits {
  using last = std::remove_cvref_t<std::tuple_element_t<sizeof...(Hs) - 1, std::tuple<Hs...>>>;
  static constexpr bool fallback_last = is_otherwise<last>::value;
};

template <class H>
constexpr bool not_otherwise = !is_otherwise<std::remove_cvref_t<H>>::value;

template <class Tuple, std::size_t... I>
auto match_result(std::index_sequence<I...>) -> std::common_type_t<
    handler_result_t<std::remove_cvref_t<std::tuple_element_t<I, Tuple>>>...,
    std::invoke_result_t<
        decltype(std::declval<std::tuple_element_t<sizeof...(I), Tuple>&>().fn)&,
        message&&>>;

} // namespace detail

/// Dispatches `msg` to the first handler whose kind and type match; the fallback (last
/// argument, bastion::otherwise(f)) gets the message when none does.
///
/// A handler's parameter decides what it matches: `bastion::question<T>` matches asks of T,
/// `const T&` / `T` / `T&&` matches tells of T, `bastion::broadcast<T> const&` matches
/// broadcasts of T. Types compare exactly (typeid after decay: no conversions, no bases).
/// Checked at compile time: the fallback is mandatory and last, each handler takes one
/// concrete parameter. Returns the common type of the handlers' results (void when they all
/// return void). @pre bool(msg). Complexity: one type comparison per handler tried.
/// Thread-safety: runs on the calling thread; the handlers run there.
template <class... Hs>
decltype(auto) match(message&& msg, Hs&&... hs) {
  static_assert(
      sizeof...(Hs) > 0 && detail::match_traits<Hs...>::fallback_last,
      "bastion::match: the last argument must be bastion::otherwise(fallback): a match without "
      "a fallback would lose the messages it does not handle");
  using tuple = std::tuple<std::remove_cvref_t<Hs>&...>;
  using R = decltype(detail::match_result<tuple>(std::make_index_sequence<sizeof...(Hs) - 1>{}));
  message m = std::move(msg);
  tuple hst{hs...};
  return detail::dispatch<R, 0>(m, hst);
}

/// The typed alternative to match(): a chain built top to bottom, then applied to messages.
///
///   auto h = bastion::handlers{}
///                .on_question<int>([](bastion::question<int> q) { q.reply(q.value() * 2); })
///                .on_tell<std::string>([](std::string s) { ... })
///                .on_broadcast<config>([](bastion::broadcast<config> const& c) { ... })
///                .on_fallback([](bastion::message&& m) { ... });
///   h(std::move(msg));
///
/// Handlers are tried in the order they were added; the first of the right kind and type
/// runs. on_fallback is mandatory before the chain is applied (static_assert). Applying it
/// is const-free: the handlers may keep state. Thread-safety: one chain per actor; apply it on
/// one thread at a time.
template <class... Hs>
class handlers {
public:
  handlers() = default;
  explicit handlers(std::tuple<Hs...> hs)
      : hs_(std::move(hs)) {}

  /// Adds a handler of asks of T: `f(bastion::question<T>)`.
  template <class T, class F>
  auto on_question(F f) && {
    return add<detail::typed_handler<message_kind::ask, T, F>>(std::move(f));
  }
  /// Adds a handler of tells of T: `f(T&&)` (or `T`, `const T&`).
  template <class T, class F>
  auto on_tell(F f) && {
    return add<detail::typed_handler<message_kind::tell, T, F>>(std::move(f));
  }
  /// Adds a handler of broadcasts of T: `f(bastion::broadcast<T> const&)`.
  template <class T, class F>
  auto on_broadcast(F f) && {
    return add<detail::typed_handler<message_kind::broadcast, T, F>>(std::move(f));
  }
  /// Sets the fallback, `f(bastion::message&&)`; must come last.
  template <class F>
  auto on_fallback(F f) && {
    return add<otherwise_t<F>>(std::move(f));
  }

  /// Applies the chain to `m`. @pre bool(m).
  void operator()(message&& m) {
    static_assert(
        sizeof...(Hs) > 0
            && detail::is_otherwise<
                std::tuple_element_t<sizeof...(Hs) - 1, std::tuple<Hs...>>>::value,
        "bastion::handlers: call on_fallback(...) last before applying a handler chain: a chain "
        "without a fallback would lose the messages it does not handle");
    message local = std::move(m);
    detail::dispatch<void, 0>(local, hs_);
  }

private:
  template <class H, class F>
  auto add(F f) {
    static_assert(
        (detail::not_otherwise<Hs> && ...),
        "bastion::handlers: on_fallback must be the last call of the chain");
    return handlers<Hs..., H>{std::tuple_cat(std::move(hs_), std::tuple<H>{H{std::move(f)}})};
  }

  std::tuple<Hs...> hs_;
};

handlers() -> handlers<>;

} // namespace bastion
