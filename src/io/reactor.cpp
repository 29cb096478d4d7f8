// src/io/reactor.cpp: the epoll reactor (see reactor.hpp for the design).
#include "reactor.hpp"

#include <bastion/lightproc/errors.hpp>

#include "../executor/runtime_impl.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace bastion::detail {

namespace {
[[noreturn]] void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::generic_category(), what);
}
constexpr std::uint32_t read_events = EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI;
constexpr std::uint32_t write_events = EPOLLOUT | EPOLLHUP | EPOLLERR;
/// Events taken from the kernel per epoll_wait call.
constexpr int batch = 256;
} // namespace

// ----------------------------------------------------------------- io_source ----

void io_source::bump(io_dir d) noexcept {
  ready_seq_[static_cast<unsigned>(d)].fetch_add(1, std::memory_order_seq_cst);
  waiters_[static_cast<unsigned>(d)].take().wake();
}

void io_source::on_event(std::uint32_t mask) noexcept {
  if ((mask & (EPOLLRDHUP | EPOLLERR | EPOLLPRI)) != 0) {
    sticky_.store(true, std::memory_order_release); // before the bump that publishes it
  }
  if ((mask & read_events) != 0) {
    bump(io_dir::read);
  }
  if ((mask & write_events) != 0) {
    bump(io_dir::write);
  }
}

void io_source::ensure_registered(runtime_impl* rt) {
  if (registered_.load(std::memory_order_acquire)) {
    return;
  }
  std::lock_guard lk(reg_mu_);
  if (registered_.load(std::memory_order_relaxed) || closed()) {
    return;
  }
  auto r = reactor_of(rt).shared_from_this();
  r->add(this);
  owner_ = std::move(r);
  registered_.store(true, std::memory_order_release);
}

void io_source::close() noexcept {
  if (!closed_.exchange(true, std::memory_order_acq_rel)) {
    {
      std::lock_guard lk(reg_mu_);
      if (registered_.load(std::memory_order_relaxed)) {
        owner_->deregister(this);
      }
    }
    // Wake whoever waits: they see closed() and fail with bad_file_descriptor. The syscall
    // of an operation already past its check may still run on the fd: it stays open until
    // the last reference goes.
    bump(io_dir::read);
    bump(io_dir::write);
  }
  release();
}

void io_source::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    ::close(fd_);
    if (!owner_) {
      delete this; // never registered: no epoll batch can name it
      return;
    }
    // retire() may free `this` (and with it owner_): keep the reactor alive across the call.
    const std::shared_ptr<reactor> keep = owner_;
    keep->retire(this);
  }
}

// ------------------------------------------------------------------- reactor ----

reactor::reactor() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) {
    throw_errno(errno, "bastion: epoll_create1");
  }
  evfd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (evfd_ < 0) {
    const int err = errno;
    ::close(epfd_);
    throw_errno(err, "bastion: eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN; // level-triggered: drained by poll()
  ev.data.ptr = nullptr;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) != 0) {
    const int err = errno;
    ::close(evfd_);
    ::close(epfd_);
    throw_errno(err, "bastion: epoll_ctl(eventfd)");
  }
}

reactor::~reactor() {
  free_retired();
  ::close(evfd_);
  ::close(epfd_);
}

void reactor::add(io_source* s) {
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = s;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, s->fd(), &ev) != 0) {
    throw_errno(errno, "bastion::io: epoll_ctl(ADD)");
  }
  {
    std::lock_guard lk(live_mu_);
    s->next_live_ = live_;
    if (live_ != nullptr) {
      live_->prev_live_ = s;
    }
    live_ = s;
  }
  if (registered_.fetch_add(1, std::memory_order_seq_cst) == 0 && on_first_registration_) {
    on_first_registration_(on_first_registration_arg_);
  }
}

void reactor::deregister(io_source* s) noexcept {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s->fd(), nullptr);
  {
    std::lock_guard lk(live_mu_);
    if (s->prev_live_ != nullptr) {
      s->prev_live_->next_live_ = s->next_live_;
    } else {
      live_ = s->next_live_;
    }
    if (s->next_live_ != nullptr) {
      s->next_live_->prev_live_ = s->prev_live_;
    }
    s->prev_live_ = s->next_live_ = nullptr;
  }
  registered_.fetch_sub(1, std::memory_order_seq_cst);
}

std::size_t reactor::wake_all() noexcept {
  std::vector<waker> woken;
  {
    std::lock_guard lk(live_mu_);
    for (io_source* s = live_; s != nullptr; s = s->next_live_) {
      for (auto d : {io_dir::read, io_dir::write}) {
        if (auto w = s->slot(d).take()) {
          woken.push_back(std::move(w));
        }
      }
    }
  }
  // Outside the lock: a woken proc cancelled on the spot closes its socket (deregister).
  for (auto& w : woken) {
    w.wake();
  }
  return woken.size();
}

void reactor::retire(io_source* s) noexcept {
  {
    std::lock_guard lk(retired_mu_);
    s->next_retired_ = retired_;
    retired_ = s;
  }
  free_retired_if_idle();
}

void reactor::free_retired_if_idle() noexcept {
  {
    std::lock_guard lk(retired_mu_);
    if (retired_ == nullptr) {
      return;
    }
  }
  // No poll running: no epoll batch can name a retired source any more. When a poll runs,
  // it calls this after its batch (and after unlocking), so nothing is left behind: a
  // retired source holds its reactor, and one left over would keep the reactor alive.
  if (poll_mu_.try_lock()) {
    free_retired();
    poll_mu_.unlock();
  }
}

void reactor::free_retired() noexcept {
  io_source* list = nullptr;
  {
    std::lock_guard lk(retired_mu_);
    list = std::exchange(retired_, nullptr);
  }
  while (list != nullptr) {
    delete std::exchange(list, list->next_retired_);
  }
}

void reactor::interrupt() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(evfd_, &one, sizeof one);
}

std::size_t reactor::poll(std::optional<std::chrono::steady_clock::time_point> deadline) {
  std::unique_lock lk(poll_mu_, std::try_to_lock);
  if (!lk.owns_lock()) {
    return 0;
  }
  int timeout_ms = -1;
  if (deadline) {
    const auto left = *deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      timeout_ms = 0;
    } else {
      // Round up: waking before the deadline would only make the driver park again.
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
      timeout_ms = ms > INT32_MAX ? INT32_MAX : static_cast<int>(ms);
    }
  }
  epoll_event events[batch];
  const int n = ::epoll_wait(epfd_, events, batch, timeout_ms);
  std::size_t handled = 0;
  for (int i = 0; i < n; ++i) {
    auto* s = static_cast<io_source*>(events[i].data.ptr);
    if (s == nullptr) {
      std::uint64_t v = 0;
      [[maybe_unused]] auto r = ::read(evfd_, &v, sizeof v);
      continue;
    }
    s->on_event(events[i].events);
    ++handled;
  }
  // Sources retired while this batch was dispatched may have been named by it: only now,
  // with the batch done, are they unreachable (a retire() that met our lock left them).
  lk.unlock();
  free_retired_if_idle();
  return handled;
}

// ------------------------------------------------------- readiness_operation ----

void readiness_operation::await_resume() {
  withdraw();
  if (src_->closed()) {
    throw std::system_error(
        std::make_error_code(std::errc::bad_file_descriptor),
        std::string("bastion::io: ") + op_ + ": the socket was closed while it waited");
  }
  // Not moved: the deadline passed, or a late wake (a reactor thread that bumped the sequence
  // for an edge this proc already consumed took the waker of this later wait). A late wake is
  // not a timeout: return, and the caller's loop tries its syscall again and waits again.
  if (!moved() && deadline_ && std::chrono::steady_clock::now() >= *deadline_) {
    throw timed_out();
  }
}

bool readiness_operation::await_suspend(std::coroutine_handle<> h) {
  auto* cur = current_proc();
  if (cur == nullptr) {
    throw std::logic_error("bastion::io: a socket operation was awaited outside a bastion proc");
  }
  cur->set_resume_point(h);
  auto& slot = src_->slot(dir_);
  if (deadline_) {
    race_.start(cur);
    mine_ = race_.event_target();
  } else {
    cur->add_ref();
    mine_ = static_cast<wake_target*>(cur);
  }
  slot.store(mine_);
  // Dekker pair with io_source::bump (sequence, then take): either the edge is visible now
  // or the reactor saw our waker.
  if (moved()) {
    if (slot.retract_if(std::exchange(mine_, nullptr))) {
      race_.finish();
      return false;
    }
    return true; // the reactor took the waker: its wake is on the way
  }
  if (deadline_) {
    race_.arm_timer(cur->rt_, *deadline_);
  }
  return true;
}

} // namespace bastion::detail

namespace bastion::detail {
reactor& reactor_of(runtime_impl* rt) noexcept {
  return *rt->reactor_;
}
} // namespace bastion::detail
