// src/actor/mailbox.cpp: bastion::mailbox (bastion/actor/mailbox.hpp).
#include <bastion/actor/mailbox.hpp>
#include <bastion/executor/spawn.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace bastion {

namespace {
detail::envelope* as_envelope(detail::mpsc_node* n) noexcept {
  return static_cast<detail::envelope*>(n);
}

std::uint32_t clamp_capacity(std::size_t n) noexcept {
  return static_cast<std::uint32_t>(
      std::min<std::size_t>(n, std::numeric_limits<std::uint32_t>::max()));
}

/// Waits a moment for a sender that is between its two push steps on another thread (its node
/// is linked a few instructions after it took its place; longer only when the OS preempted it
/// right there): spin first, then let the OS run it, then back off with short sleeps so a long
/// preemption does not turn into a yield storm.
void wait_for_link(unsigned& spins) noexcept {
  ++spins;
  if (spins < 64) {
    return;
  }
  if (spins < 96) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(20));
}
} // namespace

/// The waiting senders of a bounded backpressure mailbox (FIFO), with their mutex.
struct mailbox::sender_list {
  std::mutex mu;
  std::deque<send_operation*> waiting; ///< guarded by mu
};

mailbox::mode mailbox::mode_of(std::uint32_t cap, overflow_policy p) noexcept {
  if (cap == 0) {
    return mode::unbounded;
  }
  switch (p) {
  case overflow_policy::drop_oldest:
    return mode::drop_oldest;
  case overflow_policy::backpressure:
    return mode::backpressure;
  case overflow_policy::reject:
    break;
  }
  return mode::reject;
}

mailbox::mailbox(mailbox_config cfg, dead_letters& sink)
    : tx_(clamp_capacity(cfg.capacity_), cfg.policy_)
    , rare_(sink)
    , rx_(&rare_.stub, mode_of(tx_.cap, tx_.policy)) {
  tx_.head.store(&rare_.stub, std::memory_order_relaxed);
  if (bounded_backpressure()) {
    rare_.senders = new sender_list;
  }
}

mailbox::~mailbox() {
  close();
  drain_to_dead_letters(dead_letter_reason::stopped_target);
  delete rare_.senders;
}

std::int64_t mailbox::queued(std::memory_order o) const noexcept {
  const auto admitted = tx_.size.load(o);
  if (rx_.kind != mode::unbounded) {
    return admitted;
  }
  // Both counts mod 2^32: the difference is exact while fewer than 2^31 messages wait.
  return static_cast<std::int32_t>(
      static_cast<std::uint32_t>(admitted) - rx_.taken.load(std::memory_order_relaxed));
}

void mailbox::note_taken() noexcept {
  if (rx_.kind == mode::unbounded) {
    rx_.taken.store(rx_.taken.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  } else {
    tx_.size.fetch_sub(1, std::memory_order_seq_cst);
  }
}

bool mailbox::admit() noexcept {
  if (tx_.cap == 0 || tx_.policy == overflow_policy::drop_oldest) {
    tx_.size.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  auto s = tx_.size.load(std::memory_order_seq_cst);
  do {
    if (s >= static_cast<std::ptrdiff_t>(tx_.cap)) {
      return false;
    }
  } while (!tx_.size.compare_exchange_weak(s, s + 1, std::memory_order_seq_cst));
  return true;
}

void mailbox::enqueue(message&& m) noexcept {
  detail::mpsc_queue::push_at(tx_.head, m.release());
  std::atomic_thread_fence(std::memory_order_seq_cst);
  tx_.consumer.take().wake();
  detail::note_message_sent();
  if (bounded_drop_oldest()) {
    trim_from_sender();
  }
}

void mailbox::lock_consumer() noexcept {
  while (rx_.consumer_lock.exchange(true, std::memory_order_acquire)) {
    std::this_thread::yield();
  }
}

detail::envelope* mailbox::trim_locked(std::size_t keep) noexcept {
  detail::envelope* chain = nullptr;
  detail::envelope* last = nullptr;
  while (tx_.size.load(std::memory_order_seq_cst) > static_cast<std::ptrdiff_t>(keep)) {
    auto* n = pop_node();
    if (n == nullptr) {
      break; // a sender is mid-push; it trims after itself
    }
    note_taken();
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
    rare_.sink->record(message::adopt(chain), r);
    chain = next;
  }
}

void mailbox::trim_from_sender() noexcept {
  while (tx_.size.load(std::memory_order_seq_cst) > static_cast<std::ptrdiff_t>(tx_.cap)) {
    if (rx_.consumer_lock.exchange(true, std::memory_order_acquire)) {
      return; // the consumer (or another sender) holds it and trims itself
    }
    auto* chain = trim_locked(tx_.cap);
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
  if (tx_.closed.load(std::memory_order_acquire)) {
    rare_.sink->record(std::move(m), dead_letter_reason::stopped_target);
    return false;
  }
  if (tx_.policy == overflow_policy::backpressure
      && tx_.has_senders.load(std::memory_order_seq_cst)) {
    // Waiting senders come first; a non-waiting send while they wait is a full mailbox.
    rare_.sink->record(std::move(m), dead_letter_reason::mailbox_full);
    return false;
  }
  if (!admit()) {
    rare_.sink->record(std::move(m), dead_letter_reason::mailbox_full);
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
    auto& list = *mb_.rare_.senders;
    std::lock_guard lock(list.mu);
    if (queued_) { // the proc was cancelled while it waited
      queued_ = false;
      list.waiting.erase(std::find(list.waiting.begin(), list.waiting.end(), this));
      mb_.tx_.has_senders.store(!list.waiting.empty(), std::memory_order_seq_cst);
      w_.reset();
      abandoned = true;
    }
  }
  if (abandoned && m_) {
    mb_.rare_.sink->record(std::move(m_), dead_letter_reason::mailbox_full);
  }
}

bool mailbox::send_operation::await_ready() {
  if (!mb_.bounded_backpressure()) {
    result_ = mb_.try_send(std::move(m_));
    return true;
  }
  if (!m_) {
    return true;
  }
  if (mb_.tx_.closed.load(std::memory_order_acquire)) {
    mb_.rare_.sink->record(std::move(m_), dead_letter_reason::stopped_target);
    return true;
  }
  if (!mb_.tx_.has_senders.load(std::memory_order_seq_cst) && mb_.admit()) {
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
  auto& list = *mb_.rare_.senders;
  std::unique_lock lock(list.mu);
  if (mb_.tx_.closed.load(std::memory_order_seq_cst)) {
    lock.unlock();
    mb_.rare_.sink->record(std::move(m_), dead_letter_reason::stopped_target);
    return false;
  }
  mb_.tx_.has_senders.store(true, std::memory_order_seq_cst);
  if (list.waiting.empty() && mb_.admit()) {
    mb_.tx_.has_senders.store(false, std::memory_order_seq_cst);
    lock.unlock();
    mb_.enqueue(std::move(m_));
    result_ = true;
    return false;
  }
  cur->set_resume_point(h);
  w_ = cur->make_waker();
  queued_ = true;
  suspended_ = true;
  list.waiting.push_back(this);
  return true;
}

void mailbox::admit_senders() {
  std::vector<detail::waker> wake;
  std::vector<message> in;
  {
    std::lock_guard lock(rare_.senders->mu);
    auto& waiting = rare_.senders->waiting;
    while (!waiting.empty() && admit()) {
      auto* op = waiting.front();
      waiting.pop_front();
      op->queued_ = false;
      op->result_ = true;
      in.push_back(std::move(op->m_));
      wake.push_back(std::move(op->w_));
    }
    tx_.has_senders.store(!waiting.empty(), std::memory_order_seq_cst);
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
  if (taker_drop_oldest()) {
    lock_consumer();
    auto* chain = trim_locked(tx_.cap);
    n = pop_node();
    unlock_consumer();
    record_chain(chain, dead_letter_reason::dropped_oldest);
  } else {
    n = pop_node();
  }
  if (n == nullptr) {
    return std::nullopt;
  }
  note_taken();
  if (taker_backpressure() && tx_.has_senders.load(std::memory_order_seq_cst)) {
    admit_senders();
  }
  auto* e = as_envelope(n);
  if (e->kind == message_kind::ask) {
    e->unanswered_sink = rare_.sink; // dropping it unanswered from here on is a dead letter
  }
  return message::adopt(e);
}

bool mailbox::recv_ready(message& out) {
  if (auto m = try_recv()) {
    out = std::move(*m);
    return true;
  }
  return false;
}

bool mailbox::park(std::coroutine_handle<> h, message& out, detail::resume_guard& guard) {
  auto* cur = detail::current_proc();
  if (cur == nullptr) {
    throw std::logic_error("bastion::mailbox::recv: awaited outside a bastion proc");
  }
  cur->set_resume_point(h);
  const bool suspend = publish_and_recheck(cur, out);
  if (suspend) {
    // A sender whose message this actor took without parking may still take the waker just
    // published (it takes after it links): that wake finds nothing, and the guard parks the
    // proc again instead of resuming it empty-handed.
    cur->set_resume_guard(&guard);
  }
  return suspend;
}

bool mailbox::publish_and_recheck(detail::proc_header* p, message& out) {
  tx_.consumer.publish(p);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Re-check by taking: a sender links its message, fences, then takes the waker, so either
  // this reaches the message or that sender wakes us. A message admitted but not linked yet
  // is not waited for here: its sender wakes us.
  if (auto m = try_recv()) {
    out = std::move(*m);
    return !tx_.consumer.retract(); // retracted: go on at once; else a wake is on its way
  }
  if (tx_.closed.load(std::memory_order_seq_cst)) {
    return !tx_.consumer.retract();
  }
  return true;
}

bool mailbox::repark_unless_ready(detail::proc_header* p, message& out) noexcept {
  if (out) {
    return true; // taken before suspending; this is the wake that was on its way
  }
  // Our waker was taken (by a sender, close() or a late sender of an earlier message).
  // try_recv only throws when waking blocked senders fails to allocate: then resume, and let
  // the body's recv report it; but never while a wake is in flight (it would reach the proc's
  // next, unrelated wait): then stay parked, and that wake polls us again.
  try {
    if (auto m = try_recv()) {
      out = std::move(*m);
      return true;
    }
    if (tx_.closed.load(std::memory_order_seq_cst)) {
      return true;
    }
  } catch (...) {
    return true; // nothing published: no wake in flight
  }
  // Nothing there: a late wake, or a sender still linking (it wakes us again). Park again.
  try {
    return !publish_and_recheck(p, out);
  } catch (...) {
    return tx_.consumer.retract();
  }
}

void mailbox::unpark() noexcept {
  (void)tx_.consumer.retract(); // harmless after a wake; needed when the proc was cancelled
}

message mailbox::recv_resume(message& ready, bool parked) {
  if (parked) {
    unpark();
  }
  if (ready) {
    return std::move(ready);
  }
  // Resumed by the guard with the mailbox closed, or not suspended because it was closed
  // meanwhile (a message is in `ready` otherwise). Rarely, a sender on another thread is still
  // between its two push steps then, so its message is not reachable yet: wait for its link.
  for (unsigned spins = 0;;) {
    if (auto m = try_recv()) {
      return std::move(*m);
    }
    if (tx_.closed.load(std::memory_order_seq_cst) && queued(std::memory_order_seq_cst) <= 0) {
      throw mailbox_closed{};
    }
    wait_for_link(spins);
  }
}

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
    mb_.tx_.consumer.store(race_.event_target());
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (mb_.queued(std::memory_order_seq_cst) > 0
        || mb_.tx_.closed.load(std::memory_order_seq_cst)) {
      return false; // await_resume disarms
    }
    race_.arm_timer(cur->rt_, deadline_);
    return true;
  }
  void await_resume() noexcept { disarm(); }

private:
  void disarm() noexcept {
    if (race_.started()) {
      mb_.tx_.consumer.retract();
    }
    race_.finish();
  }

  mailbox& mb_;
  clock::time_point deadline_;
  detail::deadline_race race_;
};

task<std::optional<message>> mailbox::recv_until(clock::time_point deadline) {
  for (;;) {
    if (auto m = try_recv()) {
      co_return m;
    }
    if (tx_.closed.load(std::memory_order_seq_cst) && queued(std::memory_order_seq_cst) <= 0) {
      throw mailbox_closed{};
    }
    if (clock::now() >= deadline) {
      co_return std::nullopt;
    }
    if (queued(std::memory_order_seq_cst) > 0) {
      co_await yield_now();
      continue;
    }
    co_await timed_consumer_wait{*this, deadline};
  }
}

void mailbox::close(bool wake_consumer) {
  tx_.closed.store(true, std::memory_order_seq_cst);
  std::vector<detail::waker> wake;
  std::vector<message> out;
  if (rare_.senders) {
    std::lock_guard lock(rare_.senders->mu);
    for (auto* op : rare_.senders->waiting) {
      op->queued_ = false;
      op->result_ = false;
      out.push_back(std::move(op->m_));
      wake.push_back(std::move(op->w_));
    }
    rare_.senders->waiting.clear();
    tx_.has_senders.store(false, std::memory_order_seq_cst);
  }
  for (auto& m : out) {
    rare_.sink->record(std::move(m), dead_letter_reason::stopped_target);
  }
  for (auto& w : wake) {
    w.wake();
  }
  if (wake_consumer) {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    tx_.consumer.take().wake();
  }
}

std::size_t mailbox::drain_to_dead_letters(dead_letter_reason r) {
  const bool locked = taker_drop_oldest();
  std::size_t n = 0;
  for (;;) {
    detail::mpsc_node* node = nullptr;
    if (locked) {
      lock_consumer();
    }
    auto st = pop_node(node);
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
    note_taken();
    rare_.sink->record(message::adopt(as_envelope(node)), r);
    ++n;
  }
  return n;
}

} // namespace bastion
