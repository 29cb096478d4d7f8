// examples/distributor.cpp: routing through a named distributor (shared spec, api.md
// "Routing"): a "staff" group answers questions; the main thread and an actor reach it by name
// only: request/response, ask_everyone, tell_everyone, and the no-recipients error.
#include <bastion/bastion.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>

using namespace std::chrono_literals;

namespace {
struct schedule {
  std::string day;
};
} // namespace

int main() {
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};
  const auto staff = bastion::distributor::named("staff");
  std::atomic<int> schedules{0};

  // Three staff members; each joins "staff" when it starts (and again after a restart).
  sys.children([&](bastion::children_builder& c) {
    c.name("staff").redundancy(3).distributor(staff).exec(
        [&](bastion::context& ctx) -> bastion::task<> {
          for (;;) {
            auto msg = co_await ctx.recv();
            bastion::match(
                std::move(msg),
                [&](bastion::question<std::string> q) {
                  q.reply(fmt::format("member {} is coming to {}", ctx.id(), q.value()));
                },
                [&](const schedule& s) {
                  std::printf(
                      "member %llu got the schedule for %s\n",
                      static_cast<unsigned long long>(ctx.id()),
                      s.day.c_str());
                  schedules.fetch_add(1);
                },
                bastion::otherwise([](bastion::message&&) {}));
          }
        });
  });

  // An actor that asks the staff by name, from inside its body (co_await request<R>).
  std::atomic<bool> asked{false};
  sys.children([&](bastion::children_builder& c) {
    c.name("organiser").exec([&](bastion::context&) -> bastion::task<> {
      auto reply = co_await staff.request<std::string>(std::string("the party"), 2s);
      std::printf("organiser heard: %s\n", reply.c_str());
      asked.store(true);
    });
  });

  sys.start();
  while (staff.size() < 3 || !asked.load()) {
    std::this_thread::sleep_for(1ms);
  }

  // The blocking variant, from a plain thread.
  std::printf(
      "main heard: %s\n", staff.request_sync<std::string>(std::string("lunch"), 2s).c_str());

  // One question to everyone, all replies gathered.
  auto replies = bastion::run(staff.request_everyone<std::string>(std::string("the meeting"), 2s));
  for (const auto& r : replies) {
    std::printf("everyone: %s\n", r.c_str());
  }

  // A copy of the schedule to each member.
  const auto n = staff.tell_everyone(schedule{"monday"});
  std::printf("schedule sent to %zu members\n", n);
  while (schedules.load() < static_cast<int>(n)) {
    std::this_thread::sleep_for(1ms);
  }

  // Nobody under a name: a clear error, and the message is counted in dead letters.
  try {
    bastion::distributor::named("nobody").tell_one(1);
  } catch (const bastion::distributor_error& e) {
    std::printf("as expected: %s\n", e.what());
  }

  sys.stop();
  sys.block_until_stopped();
  return 0;
}
