// vdev: build a machine from QEMU-style options and introspect it. See cli.h.
#include <iostream>
#include <string>
#include <vector>

#include "apps/vdev/cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return vdev::cli::Run(args, std::cout, std::cerr);
}
