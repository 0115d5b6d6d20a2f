// Gaussian convolution through the C++ string API, checked against a naive loop.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <kmr/kmr.hpp>

int main() {
  const int nx = 500, ny = 700, d = 3;
  std::mt19937 rng(42);
  std::normal_distribution<double> normal;
  std::vector<double> x(nx * d), y(ny * d), b(ny);
  for (auto* v : {&x, &y, &b})
    for (auto& t : *v) t = normal(rng);
  const double g = 0.5;

  kmr::Genred conv("Exp(-G*SqDist(X,Y))*B", {"G = Pm(1)", "X = Vi(3)", "Y = Vj(3)", "B = Vj(1)"}, "Sum", 1);
  std::vector<double> out(nx);
  conv.run<double>({&g, x.data(), y.data(), b.data()}, nx, ny, out.data());

  double err = 0;
  for (int i = 0; i < nx; ++i) {
    double ref = 0;
    for (int j = 0; j < ny; ++j) {
      double r2 = 0;
      for (int k = 0; k < d; ++k) r2 += (x[i * d + k] - y[j * d + k]) * (x[i * d + k] - y[j * d + k]);
      ref += std::exp(-g * r2) * b[j];
    }
    err = std::fmax(err, std::fabs(ref - out[i]) / (1 + std::fabs(ref)));
  }
  std::printf("kmr %s downstream: max error %.3g (precompiled: %s)\n", kmr::version(), err,
              conv.is_precompiled(kmr::DType::Float64) ? "yes" : "no");
  return err < 1e-12 ? 0 : 1;
}
