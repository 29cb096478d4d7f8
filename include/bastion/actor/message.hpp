// bastion/actor/message.hpp: bastion::message, the type-erased envelope every actor receives
// (tell, ask, broadcast), the ask's two ends (question<T>, reply_future<R>) and their errors.
#pragma once

#include <bastion/executor/sleep.hpp>
#include <bastion/lightproc/errors.hpp>

#include <bastion/detail/block_cache.hpp>
#include <bastion/detail/deadline_race.hpp>
#include <bastion/detail/mpsc_queue.hpp>
#include <bastion/detail/proc.hpp>
#include <bastion/detail/timer_entry.hpp>
#include <bastion/detail/waker_slot.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

namespace bastion {

class dead_letters;

/// How a message is delivered: tell (owned, one receiver), ask (owned, one receiver, one-shot
/// reply), broadcast (shared and immutable, many receivers).
enum class message_kind : std::uint8_t { tell, ask, broadcast };

/// The asker's error when an ask ends without a reply: its envelope was destroyed unanswered
/// (unmatched, dropped by a handler, sent to dead letters, left in a closed mailbox).
class no_reply : public std::runtime_error {
public:
  no_reply()
      : std::runtime_error("bastion: the ask was dropped without a reply (no_reply)") {}
};

/// A reply's type is not the one the asker expects (types compare exactly, after decay; no
/// conversions). Thrown to the replier by question<T>::reply and to the asker by its future.
class reply_type_mismatch : public std::logic_error {
public:
  /// @param expected the asker's reply type; @param got the type the handler replied with.
  reply_type_mismatch(const std::type_info& expected, const std::type_info& got);
};

namespace detail {

/// The readable (demangled) name of a type, for error messages.
std::string type_name(const std::type_info& t);

/// The one-shot channel between an ask's envelope (writer) and its reply_future (reader).
///
/// Allocated once per ask as a reply_slot<R> (below), which also holds the reply value, so
/// an ask costs two allocations (envelope, reply state). Two references (the envelope's reply
/// handle and the future); the last one destroys it (through `destroy_`, set by the derived
/// type: no vtable). `done_` goes false -> true once (seq_cst store, by the single writer)
/// after the value or `error_` is written; the reader reads them only after seeing done_
/// (seq_cst load). The reader parks in `waiter_` (see waker_slot for the pairing).
class reply_state {
public:
  reply_state(const reply_state&) = delete;
  reply_state& operator=(const reply_state&) = delete;

  [[nodiscard]] const std::type_info& expected() const noexcept { return *expected_; }
  [[nodiscard]] bool done() const noexcept { return done_.load(std::memory_order_seq_cst); }

  /// Completes with a value of exactly the expected type R. Only the writer, once. Throws
  /// what R's constructor throws (then nothing is completed).
  template <class R, class V>
  void set_value(V&& v);
  /// Completes with an error. Only the writer, once.
  void set_error(std::exception_ptr e) noexcept {
    error_ = std::move(e);
    finish();
  }
  /// The result, for the reader. @pre done().
  template <class R>
  R take();
  waker_slot& waiter() noexcept { return waiter_; }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      destroy_(this);
    }
  }

protected:
  reply_state(const std::type_info& expected, void (*destroy)(reply_state*) noexcept) noexcept
      : destroy_(destroy)
      , expected_(&expected) {}
  ~reply_state() = default;

  void finish() noexcept {
    done_.store(true, std::memory_order_seq_cst);
    waiter_.take().wake();
  }

private:
  void (*destroy_)(reply_state*) noexcept;
  std::atomic<std::uint32_t> refs_{2};
  std::atomic<bool> done_{false};
  const std::type_info* expected_;
  std::exception_ptr error_;
  waker_slot waiter_;
};

/// The reply state of an ask expecting an R, with room for the R.
template <class R>
class reply_slot final : public reply_state {
public:
  reply_slot() noexcept
      : reply_state(typeid(R), &destroy) {}
  ~reply_slot() {
    if (has_value_) {
      std::destroy_at(ptr());
    }
  }
  template <class V>
  void emplace(V&& v) {
    std::construct_at(ptr(), std::forward<V>(v));
    has_value_ = true;
  }
  R take_value() { return std::move(*ptr()); }

private:
  static void destroy(reply_state* s) noexcept { delete static_cast<reply_slot*>(s); }
  R* ptr() noexcept { return std::launder(reinterpret_cast<R*>(storage_)); }

  alignas(R) unsigned char storage_[sizeof(R)];
  bool has_value_ = false;
};

template <class R, class V>
void reply_state::set_value(V&& v) {
  static_cast<reply_slot<R>*>(this)->emplace(std::forward<V>(v));
  finish();
}

template <class R>
R reply_state::take() {
  if (error_) {
    std::rethrow_exception(error_);
  }
  if (expected() != typeid(R)) {
    throw reply_type_mismatch(typeid(R), expected());
  }
  return static_cast<reply_slot<R>*>(this)->take_value();
}

/// The writer's end of a reply_state: reply once, or on destruction tell the asker no_reply.
class reply_handle {
public:
  reply_handle() noexcept = default;
  explicit reply_handle(reply_state* s) noexcept
      : s_(s) {}
  reply_handle(reply_handle&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)) {}
  reply_handle& operator=(reply_handle&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~reply_handle() { reset(); }
  [[nodiscard]] explicit operator bool() const noexcept { return s_ != nullptr; }

  /// Sends `v`; throws reply_type_mismatch (after failing the asker with it) when R is not
  /// the asker's type, std::logic_error when already used.
  template <class R>
  void send(R&& v) {
    using D = std::decay_t<R>;
    if (s_ == nullptr) {
      throw std::logic_error("bastion::question::reply: already replied");
    }
    reply_state* s = std::exchange(s_, nullptr);
    if (s->expected() != typeid(D)) {
      reply_type_mismatch err(s->expected(), typeid(D));
      s->set_error(std::make_exception_ptr(err));
      s->release();
      throw err;
    }
    try {
      s->set_value<D>(std::forward<R>(v));
    } catch (...) {
      s->set_error(std::current_exception());
      s->release();
      throw;
    }
    s->release();
  }
  /// Fails the asker with no_reply (when not replied yet) and lets go.
  void reset() noexcept {
    if (auto* s = std::exchange(s_, nullptr)) {
      s->set_error(std::make_exception_ptr(no_reply{}));
      s->release();
    }
  }

private:
  reply_state* s_ = nullptr;
};

/// The heap node behind a message: an MPSC queue link, the header, the payload (in the
/// derived envelope_impl). One allocation per message, from the block caches: made on the
/// sender's thread, freed on the receiver's.
struct envelope
    : mpsc_node
    , cached_new {
  envelope(message_kind k, const std::type_info& t, std::uint64_t sender) noexcept
      : kind(k)
      , type(&t)
      , sender_id(sender) {}
  envelope(const envelope&) = delete;
  envelope& operator=(const envelope&) = delete;
  virtual ~envelope() = default;

  /// The stored object: a T for tell/ask, a std::shared_ptr<const T> for broadcast.
  [[nodiscard]] virtual void* data() noexcept = 0;

  message_kind kind;
  const std::type_info* type; ///< T (not the shared_ptr, for broadcasts)
  std::uint64_t sender_id;
  reply_handle reply; ///< set for asks; destroying it unanswered sends no_reply
  /// Set by the mailbox when it hands an ask to its actor: if the message is then destroyed
  /// with the reply still owed, it is recorded there as unanswered_ask. Only that path sets
  /// it, so an ask that reaches dead letters for another reason is never counted twice.
  dead_letters* unanswered_sink = nullptr;
};

template <class S>
struct envelope_impl final : envelope {
  template <class A>
  envelope_impl(message_kind k, const std::type_info& t, std::uint64_t sender, A&& a)
      : envelope(k, t, sender)
      , value(std::forward<A>(a)) {}
  [[nodiscard]] void* data() noexcept override { return &value; }
  S value;
};

} // namespace detail

/// A message type: any object type that can be moved (and is not a reference, array or
/// cv-qualified). Checked by every function that builds a message.
template <class T>
concept message_type = std::is_object_v<T> && !std::is_array_v<T> && !std::is_const_v<T>
                       && !std::is_volatile_v<T> && std::is_move_constructible_v<T>;

static_assert(message_type<int>);
static_assert(message_type<std::string>);
static_assert(message_type<std::unique_ptr<int>>);
static_assert(!message_type<const int>);

/// How a handler sees a broadcast of T: a shared, immutable view (many receivers share it).
/// Thread-safety: the referenced T is const and shared; copies of the view are independent.
template <class T>
class broadcast {
public:
  /// @param p the shared value (not null).
  explicit broadcast(std::shared_ptr<const T> p) noexcept
      : p_(std::move(p)) {}
  [[nodiscard]] const T& value() const noexcept { return *p_; }
  [[nodiscard]] const T& operator*() const noexcept { return *p_; }
  [[nodiscard]] const T* operator->() const noexcept { return p_.get(); }
  /// The shared pointer (to keep the value beyond the handler).
  [[nodiscard]] const std::shared_ptr<const T>& shared() const noexcept { return p_; }

private:
  std::shared_ptr<const T> p_;
};

template <class R>
class reply_future;
template <class T>
class question;

class message;
namespace detail {
/// Records `m` (an ask destroyed with its reply owed) in `sink` as unanswered_ask; the
/// asker then gets no_reply. Defined with dead_letters.
void record_unanswered(dead_letters& sink, message&& m) noexcept;
} // namespace detail

/// A type-erased, move-only envelope: the kind, the payload, the sender, and for an ask its
/// reply slot. What mailboxes carry and match() dispatches on.
///
/// Build one with message::tell, message::ask<R> or message::broadcast. Destroying an ask
/// that nobody answered completes the asker's future with bastion::no_reply.
/// Thread-safety: a message is one owner; move it between threads, do not share it.
class message {
public:
  message() noexcept = default;
  message(message&&) noexcept = default;
  message& operator=(message&& o) noexcept {
    if (this != &o) {
      account_unanswered();
      e_ = std::move(o.e_);
    }
    return *this;
  }
  message(const message&) = delete;
  message& operator=(const message&) = delete;
  /// An ask its actor received and dropped without replying goes to dead letters
  /// (unanswered_ask) before the asker gets no_reply.
  ~message() { account_unanswered(); }

  /// A tell of `v` (moved or copied in). @param sender opaque sender id (0: none).
  /// Allocates once. Throws what T's constructor or the allocation throws.
  template <class T>
    requires message_type<std::decay_t<T>>
  static message tell(T&& v, std::uint64_t sender = 0) {
    using D = std::decay_t<T>;
    return message{std::make_unique<detail::envelope_impl<D>>(
        message_kind::tell, typeid(D), sender, std::forward<T>(v))};
  }

  /// A broadcast of the shared, immutable `v` (not null). Each receiver gets its own message
  /// pointing at the same object.
  template <class T>
    requires message_type<std::remove_const_t<T>>
  static message broadcast(std::shared_ptr<const T> v, std::uint64_t sender = 0) {
    if (!v) {
      throw std::invalid_argument("bastion::message::broadcast: null value");
    }
    return message{std::make_unique<detail::envelope_impl<std::shared_ptr<const T>>>(
        message_kind::broadcast, typeid(T), sender, std::move(v))};
  }

  /// The ask of `v` expecting a reply of type R, and the asker's future.
  /// Usage: `auto [msg, reply] = message::ask<int>(21);`. Allocates twice (the envelope, and
  /// the reply state that also holds the reply).
  template <class R, class T>
    requires message_type<std::decay_t<T>> && message_type<R>
  static std::pair<message, reply_future<R>> ask(T&& v, std::uint64_t sender = 0);

  /// True when it holds an envelope (false once moved from).
  [[nodiscard]] explicit operator bool() const noexcept { return e_ != nullptr; }
  /// The kind. @pre bool(*this).
  [[nodiscard]] message_kind kind() const noexcept { return e_->kind; }
  /// The payload's type (T, also for broadcasts of T). @pre bool(*this).
  [[nodiscard]] const std::type_info& type() const noexcept { return *e_->type; }
  /// The sender's id (0: none). @pre bool(*this).
  [[nodiscard]] std::uint64_t sender_id() const noexcept { return e_->sender_id; }
  /// True when it is a `kind` of exactly T.
  template <class T>
  [[nodiscard]] bool is(message_kind k) const noexcept {
    return e_ && e_->kind == k && *e_->type == typeid(T);
  }

  /// The payload when this is a tell, ask or broadcast of exactly T, else null (also when
  /// empty). Reading only: the message keeps ownership (a tell's payload may have been moved
  /// from by a handler that took it by value). O(1).
  template <class T>
  [[nodiscard]] const T* peek() const noexcept {
    if (!e_ || *e_->type != typeid(T)) {
      return nullptr;
    }
    if (e_->kind == message_kind::broadcast) {
      return static_cast<const std::shared_ptr<const T>*>(e_->data())->get();
    }
    return static_cast<const T*>(e_->data());
  }

  /// Internal: gives up the envelope (for queues) / adopts one.
  [[nodiscard]] detail::envelope* release() noexcept { return e_.release(); }
  static message adopt(detail::envelope* e) noexcept {
    return message{std::unique_ptr<detail::envelope>(e)};
  }
  /// Internal: the envelope.
  [[nodiscard]] detail::envelope* get() const noexcept { return e_.get(); }

private:
  explicit message(std::unique_ptr<detail::envelope> e) noexcept
      : e_(std::move(e)) {}

  void account_unanswered() noexcept {
    if (e_ && e_->unanswered_sink != nullptr && e_->reply) [[unlikely]] {
      dead_letters* sink = std::exchange(e_->unanswered_sink, nullptr);
      detail::record_unanswered(*sink, std::move(*this));
    }
  }
  template <class T>
  friend class question;

  std::unique_ptr<detail::envelope> e_;
};

/// What a handler sees for an ask of T: the value and a one-shot reply.
///
/// Destroying it without reply() completes the asker's future with bastion::no_reply.
/// Thread-safety: one owner; reply() may run on any thread (it wakes the asker there).
template <class T>
class question {
public:
  /// Adopts an ask message of T. @pre m.is<T>(message_kind::ask).
  explicit question(message&& m) noexcept
      : m_(std::move(m)) {}
  question(question&&) noexcept = default;
  question& operator=(question&&) noexcept = default;

  /// The asked value.
  [[nodiscard]] T& value() noexcept { return *static_cast<T*>(m_.e_->data()); }
  [[nodiscard]] const T& value() const noexcept { return *static_cast<const T*>(m_.e_->data()); }
  /// The asker's id (0: none).
  [[nodiscard]] std::uint64_t sender_id() const noexcept { return m_.e_->sender_id; }
  /// True until reply() was called.
  [[nodiscard]] bool can_reply() const noexcept { return static_cast<bool>(m_.e_->reply); }

  /// Replies `r` and wakes the asker (it resumes on whichever worker picks it up).
  /// Throws reply_type_mismatch (naming both types; the asker gets the same error) when the
  /// decayed type of `r` is not the asker's reply type, std::logic_error when called twice.
  template <class R>
  void reply(R&& r) {
    m_.e_->reply.send(std::forward<R>(r));
  }

private:
  message m_;
};

/// The asker's end of an ask expecting an R.
///
/// `co_await std::move(f)` suspends the asking proc until the reply comes (it resumes on
/// the worker that picks it up after the replier's wake), then yields the R, or throws
/// no_reply (dropped unanswered) or reply_type_mismatch. `co_await std::move(f).with_timeout(d)`
/// also throws bastion::timed_out after `d`. Awaiting outside a bastion proc throws
/// std::logic_error. Thread-safety: one owner; do not share. Dropping it is fine (the reply is
/// discarded).
template <class R>
class [[nodiscard]] reply_future {
public:
  reply_future() noexcept = default;
  explicit reply_future(detail::reply_state* s) noexcept
      : s_(s) {}
  reply_future(reply_future&& o) noexcept
      : s_(std::exchange(o.s_, nullptr)) {}
  reply_future& operator=(reply_future&& o) noexcept {
    if (this != &o) {
      reset();
      s_ = std::exchange(o.s_, nullptr);
    }
    return *this;
  }
  ~reply_future() { reset(); }

  /// True once the reply (or the error) arrived. Safe from any thread while the future lives.
  [[nodiscard]] bool is_ready() const noexcept { return s_ && s_->done(); }

  /// Awaits the reply; see the class comment.
  auto operator co_await() && { return reply_operation{std::move(*this)}; }

  /// Awaits the reply for at most `d` (any duration); throws bastion::timed_out after it.
  template <class Rep, class Period>
  auto with_timeout(std::chrono::duration<Rep, Period> d) && {
    return timed_reply_operation{
        std::move(*this), clock::now() + std::chrono::duration_cast<clock::duration>(d)};
  }

private:
  void reset() noexcept {
    if (auto* s = std::exchange(s_, nullptr)) {
      s->release();
    }
  }

  /// Awaiter of a reply without deadline. Immovable once awaited.
  class reply_operation {
  public:
    explicit reply_operation(reply_future f) noexcept
        : f_(std::move(f)) {}
    reply_operation(const reply_operation&) = delete;
    reply_operation& operator=(const reply_operation&) = delete;
    ~reply_operation() {
      if (f_.s_ != nullptr) {
        f_.s_->waiter().retract(); // cancelled while waiting: take the waker back
      }
    }
    [[nodiscard]] bool await_ready() const noexcept { return f_.s_ == nullptr || f_.s_->done(); }
    bool await_suspend(std::coroutine_handle<> h) {
      auto* cur = detail::current_proc();
      if (cur == nullptr) {
        throw std::logic_error("bastion::reply_future: awaited outside a bastion proc");
      }
      cur->set_resume_point(h);
      f_.s_->waiter().publish(cur);
      if (f_.s_->done()) {
        return !f_.s_->waiter().retract(); // retracted: resume now; else a wake is coming
      }
      return true;
    }
    R await_resume() {
      if (f_.s_ == nullptr) {
        throw std::logic_error("bastion::reply_future: awaiting an empty future");
      }
      return f_.s_->template take<R>();
    }

  private:
    reply_future f_;
  };

  /// Awaiter of a reply with a deadline: the reply and a timer race through a race_cell.
  class timed_reply_operation {
  public:
    timed_reply_operation(reply_future f, clock::time_point deadline) noexcept
        : f_(std::move(f))
        , deadline_(deadline) {}
    timed_reply_operation(const timed_reply_operation&) = delete;
    timed_reply_operation& operator=(const timed_reply_operation&) = delete;
    ~timed_reply_operation() { disarm(); }

    [[nodiscard]] bool await_ready() const noexcept { return f_.s_ == nullptr || f_.s_->done(); }
    bool await_suspend(std::coroutine_handle<> h) {
      auto* cur = detail::current_proc();
      if (cur == nullptr) {
        throw std::logic_error("bastion::reply_future: awaited outside a bastion proc");
      }
      cur->set_resume_point(h);
      race_.start(cur);
      f_.s_->waiter().store(race_.event_target());
      if (f_.s_->done()) {
        return false; // await_resume disarms: a late wake through the cell is harmless
      }
      race_.arm_timer(cur->rt_, deadline_);
      return true;
    }
    R await_resume() {
      disarm();
      if (f_.s_ == nullptr) {
        throw std::logic_error("bastion::reply_future: awaiting an empty future");
      }
      if (!f_.s_->done()) {
        throw timed_out{};
      }
      return f_.s_->template take<R>();
    }

  private:
    void disarm() noexcept {
      if (race_.started() && f_.s_ != nullptr) {
        f_.s_->waiter().retract();
      }
      race_.finish();
    }

    reply_future f_;
    clock::time_point deadline_;
    detail::deadline_race race_;
  };

  detail::reply_state* s_ = nullptr;
};

template <class R, class T>
  requires message_type<std::decay_t<T>> && message_type<R>
std::pair<message, reply_future<R>> message::ask(T&& v, std::uint64_t sender) {
  using D = std::decay_t<T>;
  auto e = std::make_unique<detail::envelope_impl<D>>(
      message_kind::ask, typeid(D), sender, std::forward<T>(v));
  auto* s = new detail::reply_slot<R>();
  e->reply = detail::reply_handle{s};
  return {message{std::move(e)}, reply_future<R>{s}};
}

} // namespace bastion
