// Partial states (DESIGN decision 13) and int64 indices (decision 11) through the kernel ABI and
// kmr::Genred: run_state on chunks of j with offsets, merge_states, finalize_states equal run; the
// runtime's state layout equals the templates' (KMR_MODE_DIMS); offsets past 2^53 stay exact.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kmr/exec/cpu_driver.hpp"
#include "kmr/formula/formula.hpp"
#include "kmr/runtime/genred.hpp"

namespace {

struct Case {
  const char* reduction;
  const char* formula;
  const char* formula2;  // "" for none
  long long k;
};

// One formula per reduction family; dims 2 for the vector ones.
const Case kCases[] = {
    {"Sum", "Exp(-SqDist(X,Y))*B", "", 0},
    {"Min", "SqDist(X,Y)", "", 0},
    {"Max", "X*Y", "", 0},
    {"ArgMin", "SqDist(X,Y)", "", 0},
    {"ArgMax", "X*Y", "", 0},
    {"Min_ArgMin", "X*Y", "", 0},
    {"Max_ArgMax", "SqDist(X,Y)", "", 0},
    {"KMin", "X*Y", "", 3},
    {"ArgKMin", "SqDist(X,Y)", "", 3},
    {"KMin_ArgKMin", "X*Y", "", 4},
    {"LogSumExp", "-SqDist(X,Y)", "", 0},
    {"LogSumExp", "-SqDist(X,Y)", "B", 0},
    {"SumSoftMaxWeight", "-SqDist(X,Y)", "B", 0},
};

// Values rounded to multiples of 1/8 so that Min/Max/KMin have ties across chunks.
std::vector<double> data(std::size_t n, std::mt19937& g) {
  std::uniform_int_distribution<int> u(-8, 8);
  std::vector<double> v(n);
  for (auto& x : v) x = u(g) / 8.0;
  return v;
}

TEST(PartialStates, ChunksMergeToTheDirectRun) {
  const unsigned seed = 777u;
  std::printf("seed = %u\n", seed);
  std::mt19937 g(seed);
  const std::int64_t nx = 9, ny = 700;
  const auto x = data(nx * 2, g), y = data(ny * 2, g), b = data(ny * 2, g);
  const std::int64_t cuts[] = {0, 0, 5, 6, 300, 700};  // uneven, with an empty chunk
  for (const Case& c : kCases) {
    for (int axis : {1, 0}) {
      SCOPED_TRACE(std::string(c.reduction) + " " + c.formula + " formula2=" + c.formula2 +
                   " axis=" + std::to_string(axis));
      kmr::GenredOptions o;
      o.opt_arg = c.k;
      o.formula2 = c.formula2;
      // axis 0: the reduced variables are the Vi ones.
      const std::vector<std::string> aliases =
          axis == 1 ? std::vector<std::string>{"X = Vi(2)", "Y = Vj(2)", "B = Vj(2)"}
                    : std::vector<std::string>{"X = Vj(2)", "Y = Vi(2)", "B = Vi(2)"};
      kmr::Genred r(c.formula, aliases, c.reduction, axis, o);
      const kmr::DType dt = kmr::DType::Float64;
      const std::int64_t nrx = axis == 1 ? nx : ny, nry = axis == 1 ? ny : nx;  // user's nx, ny
      std::vector<double> want(std::size_t(nx * r.out_dim()) + 1);
      std::vector<std::int64_t> want_idx(std::size_t(nx * r.out_idx_dim()) + 1);
      auto args_at = [&](std::int64_t j0) {  // every alias is an argument, used or not
        return std::vector<const void*>{x.data(), y.data() + 2 * j0, b.data() + 2 * j0};
      };
      {
        auto a = args_at(0);
        r.run(dt, a.data(), a.size(), nrx, nry, want.data(), want_idx.data());
      }
      const kmr::Genred::StateLayout l = r.state_layout(dt);
      // The runtime's layout is the templates' (the kernel's KMR_MODE_DIMS).
      std::vector<std::vector<double>> accs;
      std::vector<std::vector<std::int64_t>> idxs;
      for (std::size_t p = 0; p + 1 < std::size(cuts); ++p) {
        const std::int64_t j0 = cuts[p], n = cuts[p + 1] - cuts[p];
        accs.emplace_back(std::size_t(nx * l.acc_dim) + 1, -1.0);
        idxs.emplace_back(std::size_t(nx * l.idx_dim) + 1, -1);
        auto a = args_at(j0);
        r.run_state(dt, a.data(), a.size(), axis == 1 ? nx : n, axis == 1 ? n : nx, accs.back().data(),
                    idxs.back().data(), j0);
      }
      // Merged in reverse order, in one go, then finalized.
      std::vector<const void*> pa;
      std::vector<const std::int64_t*> pi;
      for (std::size_t p = accs.size(); p-- > 0;) pa.push_back(accs[p].data()), pi.push_back(idxs[p].data());
      std::vector<double> macc(std::size_t(nx * l.acc_dim) + 1);
      std::vector<std::int64_t> midx(std::size_t(nx * l.idx_dim) + 1);
      r.merge_states(dt, nx, pa, pi, macc.data(), midx.data());
      std::vector<double> got(want.size());
      std::vector<std::int64_t> got_idx(want_idx.size());
      r.finalize_states(dt, nx, {macc.data()}, {midx.data()}, got.data(), got_idx.data());
      EXPECT_EQ(got_idx, want_idx);
      for (std::size_t s = 0; s + 1 < want.size(); ++s) {
        if (std::isnan(want[s])) {  // the log of a negative weighted sum
          EXPECT_TRUE(std::isnan(got[s])) << s;
        } else {
          EXPECT_NEAR(got[s], want[s], 1e-12 * (1 + std::abs(want[s]))) << s;
        }
      }
      // finalize_states of all the chunks at once (its own merge, chunk order) agrees too.
      std::vector<double> got2(want.size());
      std::vector<std::int64_t> got2_idx(want_idx.size());
      r.finalize_states(dt, nx, pa, pi, got2.data(), got2_idx.data());
      EXPECT_EQ(got2_idx, want_idx);
    }
  }
}

// KMR_MODE_DIMS: the kernel's own acc_dim/idx_dim/out dims.
using SqD2 = kmr::SqDist<kmr::Var<0, 2, 0>, kmr::Var<1, 2, 1>>;
using Weighted = kmr::Concat<SqD2, kmr::Var<0, 2, 0>>;  // dim 3: f and weights of dim 2

template <class Red, class F = SqD2>
std::vector<std::int64_t> kernel_dims(long long k) {
  kmr_kernel_call c{};
  c.abi_version = KMR_KERNEL_ABI_VERSION;
  c.mode = KMR_MODE_DIMS;
  c.k = k;
  std::vector<std::int64_t> d(5, -1);
  c.out_idx = d.data();
  EXPECT_EQ((kmr::run_cpu<F, Red, float>(&c)), 0);
  return d;
}

TEST(PartialStates, RuntimeLayoutIsTheTemplates) {
  auto check = [](const char* red, long long k, std::vector<std::int64_t> dims) {
    kmr::GenredOptions o;
    o.opt_arg = k;
    kmr::Genred r("SqDist(X,Y)", {"X = Vi(2)", "Y = Vj(2)"}, red, 1, o);
    const auto l = r.state_layout(kmr::DType::Float32);
    EXPECT_EQ(l.acc_dim, dims[0]) << red;
    EXPECT_EQ(l.idx_dim, dims[1]) << red;
    EXPECT_EQ(r.out_dim(), dims[2]) << red;
    EXPECT_EQ(r.out_idx_dim(), dims[3]) << red;
    EXPECT_EQ(dims[4], 4) << red;  // float accumulator
    EXPECT_EQ(l.acc_dtype, kmr::DType::Float32);
  };
  check("Sum", 0, kernel_dims<kmr::SumReduction<float, 1>>(0));
  check("Min", 0, kernel_dims<kmr::MinReduction<float, 1>>(0));
  check("ArgMax", 0, kernel_dims<kmr::ArgMaxReduction<float, 1>>(0));
  check("Min_ArgMin", 0, kernel_dims<kmr::Min_ArgMinReduction<float, 1>>(0));
  check("KMin", 5, kernel_dims<kmr::KMinReduction<float, 1>>(5));
  check("ArgKMin", 5, kernel_dims<kmr::ArgKMinReduction<float, 1>>(5));
  check("KMin_ArgKMin", 5, kernel_dims<kmr::KMin_ArgKMinReduction<float, 1>>(5));
  check("LogSumExp", 0, kernel_dims<kmr::LogSumExpReduction<float, 1>>(0));
  kmr::GenredOptions o;
  o.formula2 = "X";
  o.dtype_acc = "float64";
  kmr::Genred w("-SqDist(X,Y)", {"X = Vi(2)", "Y = Vj(2)"}, "SumSoftMaxWeight", 1, o);
  const auto l = w.state_layout(kmr::DType::Float32);
  const auto d = kernel_dims<kmr::SumSoftMaxWeightReduction<double, 3>, Weighted>(0);
  EXPECT_EQ(l.acc_dim, d[0]);
  EXPECT_EQ(l.acc_dtype, kmr::DType::Float64);
  EXPECT_EQ(d[4], 8);
  kmr::Genred lw("-SqDist(X,Y)", {"X = Vi(2)", "Y = Vj(2)"}, "LogSumExp", 1, o);
  EXPECT_EQ(lw.state_layout(kmr::DType::Float32).acc_dim, (kernel_dims<kmr::LogSumExpWeightReduction<double, 3>, Weighted>(0)[0]));
  o = {};
  o.sum_scheme = "kahan";
  kmr::Genred kh("SqDist(X,Y)", {"X = Vi(2)", "Y = Vj(2)"}, "Sum", 1, o);
  EXPECT_EQ(kh.state_layout(kmr::DType::Float32).acc_dim, (kernel_dims<kmr::SumKahanReduction<float, 1>>(0)[0]));
}

// Offsets far past float (2^24) and double (2^53) exactness: indices stay exact int64, empty slots stay empty.
TEST(PartialStates, HugeOffsetsStayExact) {
  kmr::GenredOptions o;
  o.opt_arg = 3;
  kmr::Genred r("SqDist(X,Y)", {"X = Vi(1)", "Y = Vj(1)"}, "KMin_ArgKMin", 1, o);
  const float x[1] = {0.0f}, y[2] = {2.0f, 1.0f};
  const void* args[2] = {x, y};
  const std::int64_t off = (std::int64_t(1) << 60) + 3;
  std::vector<float> acc(3);
  std::vector<std::int64_t> idx(3);
  r.run_state(kmr::DType::Float32, args, 2, 1, 2, acc.data(), idx.data(), off);
  EXPECT_EQ(idx[0], off + 1);
  EXPECT_EQ(idx[1], off);
  EXPECT_EQ(idx[2], INT64_MAX);  // no element: the empty slot marker
  std::vector<float> out(3);
  std::vector<std::int64_t> oidx(3);
  r.finalize_states(kmr::DType::Float32, 1, {acc.data()}, {idx.data()}, out.data(), oidx.data());
  EXPECT_EQ(oidx, (std::vector<std::int64_t>{off + 1, off, -1}));
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 4.0f);
  // Bad calls are errors, not crashes.
  EXPECT_THROW(r.run_state(kmr::DType::Float32, args, 2, 1, 2, acc.data(), idx.data(), -1), kmr::Error);
  EXPECT_THROW(r.merge_states(kmr::DType::Float32, 1, {}, {}, acc.data(), idx.data()), kmr::Error);
  EXPECT_THROW(r.merge_states(kmr::DType::Float32, 1, {acc.data()}, {nullptr}, acc.data(), idx.data()), kmr::Error);
  EXPECT_THROW(r.finalize_states(kmr::DType::Float32, 1, {acc.data()}, {idx.data()}, out.data(), nullptr),
               kmr::Error);
}

}  // namespace
