// src/actor/mailbox.cpp: bastion::mailbox (bastion/actor/mailbox.hpp).
#include <bastion/actor/mailbox.hpp>
#include <bastion/executor/spawn.hpp>

#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

namespace bastion {

namespace {
detail::envelope* as_envelope(detail::mpsc_node* n) noexcept {
  return static_cast<detail::envelope*>(n);
}
} // namespace

mailbox::~mailbox() {
  close();
  drain_to_dead_letters(dead_letter_reason::stopped_target);
}

bool mailbox::admit() noexcept {
  if (cap_ == 0 || policy_ == overflow_policy::drop_oldest) {
    size_.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  auto s = size_.load(std::memory_order_seq_cst);
  do {
    if (s >= static_cast<std::ptrdiff_t>(cap_)) {
      return false;
    }
  } while (!size_.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst));
  return true;
}

void mailbox::enqueue(message&& m) noexcept {
  queue_.push(m.release());
  std::atomic_thread_fence(std::memory_order_seq_cst);
  consumer_.take().wake();
  if (policy_ == overflow_policy::drop_oldest && cap_ != 0) {
    trim_from_sender();
  }
}

void mailbox::lock_consumer() noexcept {
  while (consumer_lock_.exchange(true, std::memory_order_acquire)) {
    std::this_thread::yield();
  }
}

detail::envelope* mailbox::trim_locked(std::size_t keep) noexcept {
  detail::envelope* chain = nullptr;
  detail::envelope* last = nullptr;
  while (size_.load(std::memory_order_seq_cst) > static_cast<std::ptrdiff_t>(keep)) {
    auto* n = queue_.pop();
    if (n == nullptr) {
      break; // a sender is mid-push; it trims after itself
    }
    size_.fetch_sub(1, std::memory_order_seq_cst);
    auto* e = as_envelope(n);
    e->next_.store(nullptr, std::memory_order_relaxed); // reused as a private link
    if (last == nullptr) {
      chain = e;
    } else {
      last->next_.store(e, std::memory_order_relaxed);
    }
    last = e;
  }
  return chain;
}

void mailbox::record_chain(detail::envelope* chain, dead_letter_reason r) noexcept {
  while (chain != nullptr) {
    auto* next = as_envelope(chain->next_.load(std::memory_order_relaxed));
    sink_->record(message::adopt(chain), r);
    chain = next;
  }
}

void mailbox::trim_from_sender() noexcept {
  while (size_.load(std::memory_order_seq_cst) > static_cast<std::ptrdiff_t>(cap_)) {
    if (consumer_lock_.exchange(true, std::memory_order_acquire)) {
      return; // the consumer (or another sender) holds it and trims itself
    }
    auto* chain = trim_locked(cap_);
    unlock_consumer();
    if (chain == nullptr) {
      return;
    }
    record_chain(chain, dead_letter_reason::dropped_oldest);
  }
}

bool mailbox::try_send(message&& m) {
  if (!m) {
    return false;
  }
  if (closed_.load(std::memory_order_acquire)) {
    sink_->record(std::move(m), dead_letter_reason::stopped_target);
    return false;
  }
  if (policy_ == overflow_policy::backpressure && has_senders_.load(std::memory_order_seq_cst)) {
    // Waiting senders come first; a non-waiting send while they wait is a full mailbox.
    sink_->record(std::move(m), dead_letter_reason::mailbox_full);
    return false;
  }
  if (!admit()) {
    sink_->record(std::move(m), dead_letter_reason::mailbox_full);
    return false;
  }
  enqueue(std::move(m));
  return true;
}

// ---- send_operation ----

mailbox::send_operation::~send_operation() {
  if (!suspended_) {
    return;
  }
  bool abandoned = false;
  {
    std::lock_guard lock(mb_.senders_mu_);
    if (queued_) { // the proc was cancelled while it waited
      queued_ = false;
      mb_.senders_.erase(std::find(mb_.senders_.begin(), mb_.senders_.end(), this));
      mb_.has_senders_.store(!mb_.senders_.empty(), std::memory_order_seq_cst);
      w_.reset();
      abandoned = true;
    }
  }
  if (abandoned && m_) {
    mb_.sink_->record(std::move(m_), dead_letter_reason::mailbox_full);
  }
}

bool mailbox::send_operation::await_ready() {
  if (mb_.policy_ != overflow_policy::backpressure || mb_.cap_ == 0) {
    result_ = mb_.try_send(std::move(m_));
    return true;
  }
  if (!m_) {
    return true;
  }
  if (mb_.closed_.load(std::memory_order_acquire)) {
    mb_.sink_->record(std::move(m_), dead_letter_reason::stopped_target);
    return true;
  }
  if (!mb_.has_senders_.load(std::memory_order_seq_cst) && mb_.admit()) {
    mb_.enqueue(std::move(m_));
    result_ = true;
    return true;
  }
  return false;
}

bool mailbox::send_operation::await_suspend(std::coroutine_handle<> h) {
  auto* cur = detail::current_proc();
  if (cur == nullptr) {
    throw std::logic_error("bastion::mailbox::send: must wait outside a bastion proc");
  }
  std::unique_lock lock(mb_.senders_mu_);
  if (mb_.closed_.load(std::memory_order_seq_cst)) {
    lock.unlock();
    mb_.sink_->record(std::move(m_), dead_letter_reason::stopped_target);
    return false;
  }
  mb_.has_senders_.store(true, std::memory_order_seq_cst);
  if (mb_.senders_.empty() && mb_.admit()) {
    mb_.has_senders_.store(false, std::memory_order_seq_cst);
    lock.unlock();
    mb_.enqueue(std::move(m_));
    result_ = true;
    return false;
  }
  cur->set_resume_point(h);
  w_ = cur->make_waker();
  queued_ = true;
  suspended_ = true;
  mb_.senders_.push_back(this);
  return true;
}

void mailbox::admit_senders() {
  std::vector<detail::waker> wake;
  std::vector<message> in;
  {
    std::lock_guard lock(senders_mu_);
    while (!senders_.empty() && admit()) {
      auto* op = senders_.front();
      senders_.pop_front();
      op->queued_ = false;
      op->result_ = true;
      in.push_back(std::move(op->m_));
      wake.push_back(std::move(op->w_));
    }
    has_senders_.store(!senders_.empty(), std::memory_order_seq_cst);
  }
  for (auto& m : in) {
    enqueue(std::move(m)); // admitted above, in the waiters' order
  }
  for (auto& w : wake) {
    w.wake();
  }
}

// ---- consumer ----

std::optional<message> mailbox::try_recv() {
  detail::mpsc_node* n = nullptr;
  if (policy_ == overflow_policy::drop_oldest && cap_ != 0) {
    lock_consumer();
    auto* chain = trim_locked(cap_);
    n = queue_.pop();
    unlock_consumer();
    record_chain(chain, dead_letter_reason::dropped_oldest);
  } else {
    n = queue_.pop();
  }
  if (n == nullptr) {
    return std::nullopt;
  }
  size_.fetch_sub(1, std::memory_order_seq_cst);
  if (policy_ == overflow_policy::backpressure && has_senders_.load(std::memory_order_seq_cst)) {
    admit_senders();
  }
  auto* e = as_envelope(n);
  if (e->kind == message_kind::ask) {
    e->unanswered_sink = sink_; // dropping it unanswered from here on is a dead letter
  }
  return message::adopt(e);
}

/// Parks the consumer until a sender (or close) wakes it; does not suspend when a message
/// was admitted meanwhile.
class mailbox::consumer_wait {
public:
  explicit consumer_wait(mailbox& mb) noexcept
      : mb_(mb) {}
  consumer_wait(const consumer_wait&) = delete;
  consumer_wait& operator=(const consumer_wait&) = delete;
  ~consumer_wait() { mb_.consumer_.retract(); } // harmless after a wake; needed on cancel
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    auto* cur = detail::current_proc();
    if (cur == nullptr) {
      throw std::logic_error("bastion::mailbox::recv: awaited outside a bastion proc");
    }
    cur->set_resume_point(h);
    mb_.consumer_.publish(cur);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (mb_.size_.load(std::memory_order_seq_cst) > 0
        || mb_.closed_.load(std::memory_order_seq_cst)) {
      return !mb_.consumer_.retract(); // retracted: go on; else a wake is on its way
    }
    return true;
  }
  void await_resume() const noexcept {}

private:
  mailbox& mb_;
};

/// consumer_wait with a deadline: the wake and a timer race through a race_cell (the loser
/// only drops its reference).
class mailbox::timed_consumer_wait {
public:
  timed_consumer_wait(mailbox& mb, clock::time_point deadline) noexcept
      : mb_(mb)
      , deadline_(deadline) {}
  timed_consumer_wait(const timed_consumer_wait&) = delete;
  timed_consumer_wait& operator=(const timed_consumer_wait&) = delete;
  ~timed_consumer_wait() { disarm(); }
  [[nodiscard]] bool await_ready() const noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> h) {
    auto* cur = detail::current_proc();
    if (cur == nullptr) {
      throw std::logic_error("bastion::mailbox::recv_for: awaited outside a bastion proc");
    }
    cur->set_resume_point(h);
    race_.start(cur);
    mb_.consumer_.store(race_.event_target());
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (mb_.size_.load(std::memory_order_seq_cst) > 0
        || mb_.closed_.load(std::memory_order_seq_cst)) {
      return false; // await_resume disarms
    }
    race_.arm_timer(cur->rt_, deadline_);
    return true;
  }
  void await_resume() noexcept { disarm(); }

private:
  void disarm() noexcept {
    if (race_.started()) {
      mb_.consumer_.retract();
    }
    race_.finish();
  }

  mailbox& mb_;
  clock::time_point deadline_;
  detail::deadline_race race_;
};

task<message> mailbox::recv_slow() {
  for (;;) {
    if (auto m = try_recv()) {
      co_return std::move(*m);
    }
    if (closed_.load(std::memory_order_seq_cst) && size_.load(std::memory_order_seq_cst) <= 0) {
      throw mailbox_closed{};
    }
    if (size_.load(std::memory_order_seq_cst) > 0) {
      co_await yield_now(); // a sender is between its two push steps
      continue;
    }
    co_await consumer_wait{*this};
  }
}

task<std::optional<message>> mailbox::recv_until(clock::time_point deadline) {
  for (;;) {
    if (auto m = try_recv()) {
      co_return m;
    }
    if (closed_.load(std::memory_order_seq_cst) && size_.load(std::memory_order_seq_cst) <= 0) {
      throw mailbox_closed{};
    }
    if (clock::now() >= deadline) {
      co_return std::nullopt;
    }
    if (size_.load(std::memory_order_seq_cst) > 0) {
      co_await yield_now();
      continue;
    }
    co_await timed_consumer_wait{*this, deadline};
  }
}

void mailbox::close() {
  closed_.store(true, std::memory_order_seq_cst);
  std::vector<detail::waker> wake;
  std::vector<message> out;
  {
    std::lock_guard lock(senders_mu_);
    for (auto* op : senders_) {
      op->queued_ = false;
      op->result_ = false;
      out.push_back(std::move(op->m_));
      wake.push_back(std::move(op->w_));
    }
    senders_.clear();
    has_senders_.store(false, std::memory_order_seq_cst);
  }
  for (auto& m : out) {
    sink_->record(std::move(m), dead_letter_reason::stopped_target);
  }
  for (auto& w : wake) {
    w.wake();
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  consumer_.take().wake();
}

std::size_t mailbox::drain_to_dead_letters(dead_letter_reason r) {
  const bool locked = policy_ == overflow_policy::drop_oldest && cap_ != 0;
  std::size_t n = 0;
  for (;;) {
    detail::mpsc_node* node = nullptr;
    if (locked) {
      lock_consumer();
    }
    auto st = queue_.pop(node);
    if (locked) {
      unlock_consumer();
    }
    if (st == detail::mpsc_queue::pop_status::empty) {
      break;
    }
    if (st == detail::mpsc_queue::pop_status::inconsistent) {
      std::this_thread::yield();
      continue;
    }
    size_.fetch_sub(1, std::memory_order_seq_cst);
    sink_->record(message::adopt(as_envelope(node)), r);
    ++n;
  }
  return n;
}

} // namespace bastion
