// Check of CMake's dysample_cpu library (plugins/dysample/dysample_cpu.cpp, built without
// PyTorch): the one program that links it. plugins/CMakeLists.txt builds it as
// dysample_cpu_check and registers it with CTest; tests/plugins/test_cmake_build.py runs it.
// The PyTorch op compiles the same source (tests/ops/test_fused.py checks that one against the
// reference); this checks the CMake build of it, against a plain double-precision bilinear
// sampler written from the conventions in dysample_sample.h, not from its code.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "dysample_cpu.h"

namespace {

using deploykit::dysample::Dims;
using deploykit::dysample::sample_cpu;

int passed = 0, failed = 0;

void check(bool ok, const char* what, const Dims& d) {
  if (ok) {
    ++passed;
    return;
  }
  ++failed;
  std::printf("FAILED: %s (B=%lld C=%lld H=%lld W=%lld G=%lld S=%lld)\n", what, static_cast<long long>(d.batch),
              static_cast<long long>(d.channels), static_cast<long long>(d.height), static_cast<long long>(d.width),
              static_cast<long long>(d.groups), static_cast<long long>(d.scale));
}

// Deterministic values in [-1, 1).
struct Lcg {
  uint64_t state;
  float next() {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(static_cast<double>(state >> 40) / static_cast<double>(1ULL << 24) * 2.0 - 1.0);
  }
};

std::vector<float> run(const std::vector<float>& x, const std::vector<float>& offset, const Dims& d) {
  std::vector<float> out(static_cast<size_t>(d.batch * d.channels * d.out_height() * d.out_width()));
  sample_cpu<float>(x.data(), offset.data(), out.data(), d);
  return out;
}

// out[b, c, h*S+i, w*S+j] = bilinear(x[b, c], w + dx, h + dy), the source point clamped to the
// plane (grid_sample's border padding), with dx, dy from offset channel (k*G + g)*S*S + i*S + j.
double expected(const std::vector<float>& x, const std::vector<float>& offset, const Dims& d, int64_t b, int64_t c,
                int64_t oy, int64_t ox) {
  const int64_t h = oy / d.scale, i = oy % d.scale, w = ox / d.scale, j = ox % d.scale;
  const int64_t g = c / d.group_channels(), plane = d.height * d.width;
  const int64_t sub = i * d.scale + j;
  const float* offsets = offset.data() + b * d.offset_channels() * plane + h * d.width + w;
  const double dx = offsets[((0 * d.groups + g) * d.scale * d.scale + sub) * plane];
  const double dy = offsets[((1 * d.groups + g) * d.scale * d.scale + sub) * plane];
  const double sx = std::fmin(std::fmax(w + dx, 0.0), static_cast<double>(d.width - 1));
  const double sy = std::fmin(std::fmax(h + dy, 0.0), static_cast<double>(d.height - 1));
  const int64_t x0 = static_cast<int64_t>(std::floor(sx)), y0 = static_cast<int64_t>(std::floor(sy));
  const double fx = sx - x0, fy = sy - y0;
  const float* in = x.data() + (b * d.channels + c) * plane;
  double sum = 0.0;
  for (int64_t yy = y0; yy <= y0 + 1; ++yy) {
    for (int64_t xx = x0; xx <= x0 + 1; ++xx) {
      if (yy >= d.height || xx >= d.width) continue;  // only ever with weight 0, at the border
      sum += in[yy * d.width + xx] * (xx == x0 ? 1.0 - fx : fx) * (yy == y0 ? 1.0 - fy : fy);
    }
  }
  return sum;
}

void check_against_plain_bilinear() {
  Lcg lcg{12345};
  for (int64_t scale = 1; scale <= 3; ++scale) {
    for (int64_t groups = 1; groups <= 3; ++groups) {
      for (float spread : {0.3f, 3.0f, 40.0f}) {  // sub-pixel, a few pixels, far outside the plane
        const Dims d{2, 2 * groups, 5, 7, groups, scale};
        std::vector<float> x(static_cast<size_t>(d.batch * d.channels * d.height * d.width));
        std::vector<float> offset(static_cast<size_t>(d.batch * d.offset_channels() * d.height * d.width));
        for (float& v : x) v = lcg.next() * 4.0f;
        for (float& v : offset) v = lcg.next() * spread;
        const std::vector<float> out = run(x, offset, d);
        double worst = 0.0;
        size_t k = 0;
        for (int64_t b = 0; b < d.batch; ++b)
          for (int64_t c = 0; c < d.channels; ++c)
            for (int64_t oy = 0; oy < d.out_height(); ++oy)
              for (int64_t ox = 0; ox < d.out_width(); ++ox, ++k)
                worst = std::fmax(worst, std::fabs(out[k] - expected(x, offset, d, b, c, oy, ox)));
        check(worst <= 1e-4, "matches a plain bilinear sampler to 1e-4", d);
      }
    }
  }
}

void check_far_outside_offsets_clamp_to_a_corner() {
  const Dims d{1, 1, 3, 4, 1, 2};
  std::vector<float> x(12), offset(8 * 12);
  for (size_t k = 0; k < x.size(); ++k) x[k] = static_cast<float>(k);
  for (size_t k = 0; k < offset.size(); ++k) offset[k] = k < 4 * 12 ? 1000.0f : -1000.0f;  // east, north
  bool all_top_right = true;
  for (float v : run(x, offset, d)) all_top_right = all_top_right && v == 3.0f;
  check(all_top_right, "offsets far to the north-east give exactly the top-right pixel", d);
}

void check_nan_reaches_the_output_only_through_in_plane_taps() {
  // Sampling at (x=1.5, y=0): taps (1, 0) and (2, 0) with weight 1/2 each, and taps on row 1
  // with weight 0, which grid_sample still multiplies (NaN * 0 is NaN).
  const Dims d{1, 1, 2, 4, 1, 1};
  std::vector<float> offset = {1.5f, 0.5f, -0.5f, -1.5f, 0, 0, 0, 0,  // dx: every source x = 1.5
                               0, 0, 0, 0, -1, -1, -1, -1};           // dy: every source y = 0
  std::vector<float> x = {0, 2, 4, 6, 1, 1, 1, 1};
  std::vector<float> out = run(x, offset, d);
  check(out[0] == 3.0f, "x=1.5 samples halfway between pixels 1 and 2", d);
  x[5] = std::numeric_limits<float>::quiet_NaN();  // row 1, a zero-weight tap of the row-0 samples
  out = run(x, offset, d);
  check(std::isnan(out[0]), "a NaN on a zero-weight in-plane tap reaches the output", d);
  x[5] = 1.0f;
  x[0] = std::numeric_limits<float>::quiet_NaN();  // never a tap of x=1.5
  out = run(x, offset, d);
  check(out[0] == 3.0f, "a NaN outside the taps does not", d);
}

void check_planes_past_32_bit_indices_are_refused() {
  // The CPU loop keeps tap indices in 32 bits: every entry point refuses a larger plane.
  const Dims fits{1, 1, 46340, 46340, 1, 1};  // 2147395600 values
  const Dims past{1, 1, 46341, 46341, 1, 1};  // 2147488281 values
  check(deploykit::dysample::dims_problem(fits, 1, 2, 46340, 46340) == nullptr, "a 46340 x 46340 plane is accepted",
        fits);
  const char* problem = deploykit::dysample::dims_problem(past, 1, 2, 46341, 46341);
  check(problem != nullptr && std::string(problem).find("2^31 - 1") != std::string::npos,
        "a 46341 x 46341 plane is refused", past);
}

}  // namespace

int main() {
  check_against_plain_bilinear();
  check_far_outside_offsets_clamp_to_a_corner();
  check_nan_reaches_the_output_only_through_in_plane_taps();
  check_planes_past_32_bit_indices_are_refused();
  std::printf("dysample_cpu: %d checks passed, %d failed\n", passed, failed);
  return failed == 0 && passed > 0 ? 0 : 1;
}
