// CPU harness of the DySample TensorRT plugin: drives the plugin library's code with the test
// doubles of doubles.h, against whichever TensorRT headers it is compiled with, and exits
// non-zero when any check fails. Built and run by tests/plugins/test_trt_harness.py.
#include <cstdio>

#include <NvInferVersion.h>

#include "doubles.h"

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // failures stay visible if a sanitizer aborts later
  harness::test_loading();  // first: it checks the registration made when the process started
  harness::test_creator();
  harness::test_build();
  harness::test_runtime();
  std::printf("TensorRT headers %d.%d.%d: %d checks passed, %d failed\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR,
              NV_TENSORRT_PATCH, harness::checks_passed(), harness::checks_failed());
  return harness::checks_failed() == 0 ? 0 : 1;
}
