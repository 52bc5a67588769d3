#include <cstdio>

int main(int argc, char** argv) {
  std::fprintf(stderr, "loom: not built yet\n");
  return 1;
}
