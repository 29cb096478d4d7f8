// tests/install/consumer/main.cpp: proves an installed bastion can be included and linked.
#include <bastion/bastion.hpp>

#include <cstdio>
#include <string>

int main() {
  const std::string version{bastion::version_string()};
  std::printf("bastion consumer: linked against bastion %s\n", version.c_str());
  return 0;
}
