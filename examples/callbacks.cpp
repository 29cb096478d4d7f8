// examples/callbacks.cpp: the order of a child's callbacks, framed by its supervisor's,
// through a start, a restart (the body throws on a "fail" message) and a graceful stop.
#include <bastion/bastion.hpp>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace std::chrono_literals;

int main() {
  bastion::system sys{bastion::config{}.workers(2).log_level("off")};
  std::mutex mu;
  std::vector<std::string> seen;
  auto note = [&](std::string what) {
    std::printf("  callback: %s\n", what.c_str());
    std::lock_guard lock(mu);
    seen.push_back(std::move(what));
  };

  bastion::children_ref group;
  sys.supervisor([&](bastion::supervisor_builder& s) {
    // The supervisor's callbacks frame its children's (a child's restart under one_for_one
    // does not restart the supervisor: see docs/supervision.md).
    s.before_start([&] { note("supervisor before_start"); })
        .after_start([&] { note("supervisor after_start"); })
        .after_stop([&] { note("supervisor after_stop"); });
    s.children([&](bastion::children_builder& c) {
      c.name("worker")
          .exec([](bastion::context& ctx) -> bastion::task<> {
            std::printf(
                "  body: incarnation %llu runs\n",
                static_cast<unsigned long long>(ctx.incarnation()));
            for (;;) {
              auto msg = co_await ctx.recv();
              bastion::match(
                  std::move(msg),
                  [](const std::string& s) {
                    if (s == "fail") {
                      throw std::runtime_error("told to fail");
                    }
                  },
                  [&](bastion::question<int> q) { q.reply(static_cast<int>(ctx.incarnation())); },
                  bastion::otherwise([](bastion::message&&) {}));
            }
          })
          .before_start([&] { note("before_start"); })
          .after_start([&] { note("after_start"); })
          .before_restart([&](const bastion::failure& f) {
            note("before_restart");
            std::printf(
                "    (failure: %s, while handling a %s)\n",
                f.what().c_str(),
                f.message ? f.message->type_name().c_str() : "-");
          })
          .after_restart([&] { note("after_restart"); })
          .after_stop([&] { note("after_stop"); });
    });
    group = s.groups().at(0);
  });

  std::printf("start()\n");
  sys.start();
  const auto child = group.elems().at(0);
  std::printf("tell \"fail\"\n");
  child.tell(std::string{"fail"});
  // Queued behind "fail": the restarted incarnation answers it (the ref survived the restart).
  const int inc = sys.run(child.ask<int>(0, 2s));
  std::printf("the ask was answered by incarnation %d\n", inc);
  std::printf("stop()\n");
  sys.stop();
  sys.block_until_stopped();

  const std::vector<std::string> expected{
      "supervisor before_start",
      "before_start",
      "after_start",
      "supervisor after_start",
      "before_restart",
      "after_restart",
      "after_stop",
      "supervisor after_stop"};
  std::printf("order: ");
  for (const auto& s : seen) {
    std::printf("%s ", s.c_str());
  }
  std::printf("\n%s\n", seen == expected && inc == 2 ? "as documented" : "UNEXPECTED ORDER");
  return seen == expected && inc == 2 ? 0 : 1;
}
