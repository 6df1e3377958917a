// The CPU op table (tests/op_cases.hpp) on CUDA, in the spirit of ggml's
// test-backend-ops: every case runs on the CPU backend and on the GPU with the
// same float32 inputs (the same values, the same layouts: transposed, permuted,
// sliced and expanded views are rebuilt on the device), and
//   - the forward outputs must agree,
//   - every input gradient must agree for the same upstream gradient R
//     (out.backward(R)).
// Tolerance: |gpu - cpu| <= atol + rtol*|cpu| with rtol = max(1e-4, the case's
// own float32 rtol) and atol = max(1e-5, the case's float32 atol); the case
// tolerance is only looser where the CPU table already says float32 needs it.
//
// Nothing is skipped: an op (or a layout) that is not implemented on CUDA
// throws, and the case fails with the error message, so a missing op shows up
// in the GPU run. Ops with hidden randomness (dropout) are checked against the
// case's own reference given the GPU output (the mask may differ from the
// CPU's), and their gradient against R * out / x (out = x * mask / (1-p)).
//
// NQ_OP_FILTER=<substring> runs only matching cases (as on the CPU).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "gpu/gpu_test.hpp"
#include "op_cases.hpp"

namespace {

using nqtest::InputKind;
using nqtest::InputSpec;
using nqtest::Layout;
using nqtest::OpCase;
using nqtest::Stored;
using nqtest::Tol;

constexpr double kRtol = 1e-4;  // the brief's float32 CPU-vs-GPU tolerance
constexpr double kAtol = 1e-5;

// The view of `leaf` that the case's input spec describes (what
// nqtest::build does on the CPU; written out again so that it runs on any
// device: views are metadata only).
nq::Tensor apply_layout(const InputSpec& s, const nq::Tensor& leaf) {
  const int64_t r = static_cast<int64_t>(s.shape.size());
  nq::Tensor x = leaf;
  switch (s.layout) {
    case Layout::Contiguous:
      break;
    case Layout::Transposed:
      x = leaf.transpose(-2, -1);
      break;
    case Layout::Permuted: {
      std::vector<int64_t> p(r);
      for (int64_t i = 0; i < r; ++i) p[i] = r - 1 - i;
      x = leaf.permute(p);
      break;
    }
    case Layout::Sliced:
      if (r >= 2) x = x.narrow(0, 1, s.shape[0]);
      x = x.slice(-1, 1, 1 + 2 * s.shape.back(), 2);
      break;
    case Layout::Expanded:
      x = leaf.expand(s.shape);
      break;
  }
  return x;
}

struct Side {
  std::vector<nq::Tensor> leaves;  // the stored tensors (where gradients land)
  std::vector<nq::Tensor> args;    // what the op sees
};

// The case's float32 inputs on `dev`. The CPU side uses the harness's own
// builder; the GPU side copies the stored tensors to the device and rebuilds
// the views there.
Side make_side(const OpCase& c, const std::vector<Stored>& st, const nq::Device& dev, bool grad) {
  Side s;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    const InputSpec& spec = c.inputs[k];
    const bool rg = grad && spec.differentiable();
    if (dev.is_cpu()) {
      nqtest::Built b = nqtest::build(spec, st[k], nq::kFloat32, rg);
      s.leaves.push_back(b.leaf);
      s.args.push_back(b.arg);
      continue;
    }
    if (spec.kind == InputKind::Undefined) {
      s.leaves.emplace_back();
      s.args.emplace_back();
      continue;
    }
    nqtest::Built b = nqtest::build(spec, st[k], nq::kFloat32, false);  // on the CPU
    nq::Tensor leaf = b.leaf.to(dev);
    if (rg) leaf.set_requires_grad(true);
    s.leaves.push_back(leaf);
    s.args.push_back(spec.kind == InputKind::Fixed ? leaf : apply_layout(spec, leaf));
  }
  return s;
}

// A tensor's logical values on the host (outside autograd: reading a value
// must not add consumers to the graph being checked).
std::vector<double> host_values(const nq::Tensor& t) {
  nq::NoGradGuard ng;
  return t.cpu().to_vector<double>();
}

std::string fmt(double x) {
  std::ostringstream os;
  os.precision(9);
  os << x;
  return os.str();
}

bool close(double got, double want, Tol t) {
  if (std::isnan(got) && std::isnan(want)) return true;
  if (got == want) return true;  // also equal infinities
  return std::abs(got - want) <= t.abs + t.rel * std::abs(want);
}

// Compares two tensors (any devices) element by element into `rep`.
void compare(const nq::Tensor& got, const nq::Tensor& want, Tol tol, const std::string& check,
             const std::string& what, nqtest::detail::Report& rep) {
  if (got.shape() != want.shape()) {
    rep.fail(check, what + ": shape " + nq::shape_str(got.shape()) + " on CUDA, " +
                        nq::shape_str(want.shape()) + " on the CPU");
    return;
  }
  const std::vector<double> g = host_values(got), w = host_values(want);
  for (size_t i = 0; i < w.size(); ++i)
    if (!close(g[i], w[i], tol))
      rep.fail(check, what + "[" + std::to_string(i) + "] (at " +
                          nq::shape_str(nqtest::unflatten(want.shape(), static_cast<int64_t>(i))) +
                          "): CUDA " + fmt(g[i]) + ", CPU " + fmt(w[i]));
}

// Runs one case on both backends; returns whether every check passed.
bool run_case_on_cuda(const OpCase& c) {
  nqtest::detail::Report rep(c.name);
  const Tol tol{std::max(kRtol, c.fwd32.rel), std::max(kAtol, c.fwd32.abs)};
  nq::Generator g(nqtest::seed_of(c.name));  // the same stored values as the CPU table
  std::vector<Stored> st;
  for (const auto& s : c.inputs) st.push_back(nqtest::draw(s, g));
  const std::vector<nqtest::RefInput> refs = nqtest::detail::ref_inputs(c, st, nq::kFloat32);
  const bool grad = c.check_grad;

  Side cpu, gpu;
  nq::Tensor out_cpu, out_gpu;
  try {
    cpu = make_side(c, st, nq::Device::cpu(), grad);
    out_cpu = c.op(cpu.args);
  } catch (const std::exception& e) {
    rep.fail("CPU forward", std::string("threw (the CPU table should pass): ") + e.what());
    rep.finish();
    return false;
  }
  try {
    gpu = make_side(c, st, nqgpu::gpu(), grad);
  } catch (const std::exception& e) {
    rep.fail("inputs to CUDA", std::string("threw: ") + e.what());
    rep.finish();
    return false;
  }
  // The device copies and views must hold the logical values (tests .to(),
  // the views and .cpu() of a strided CUDA tensor before any op runs).
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    if (c.inputs[k].kind != InputKind::Random) continue;
    try {
      if (gpu.args[k].shape() != c.inputs[k].shape || host_values(gpu.args[k]) != refs[k].v)
        rep.fail("inputs to CUDA", "input " + std::to_string(k) + " (" +
                                       nqtest::layout_name(c.inputs[k].layout) +
                                       ") does not hold its logical values on the device");
    } catch (const std::exception& e) {
      rep.fail("inputs to CUDA", "reading input " + std::to_string(k) + " back threw: " + e.what());
    }
  }
  try {
    out_gpu = c.op(gpu.args);
  } catch (const std::exception& e) {
    rep.fail("CUDA forward", std::string("threw: ") + e.what());
    rep.finish();
    return false;
  }
  if (!out_gpu.device().is_cuda()) rep.fail("CUDA forward", "the output is not on the CUDA device");
  if (out_gpu.dtype() != out_cpu.dtype())
    rep.fail("CUDA forward", std::string("output dtype ") + nq::dtype_name(out_gpu.dtype()) + ", CPU gives " +
                                 nq::dtype_name(out_cpu.dtype()));

  // ---- forward ----
  bool same_forward = true;  // for random ops: did both backends draw the same mask?
  if (c.reference_given_output) {
    // Hidden randomness: check the GPU output against the case's reference,
    // given the values it produced (which elements were kept).
    const nqtest::RefInput actual{out_gpu.shape(), host_values(out_gpu)};
    const nqtest::RefOut want = c.reference_given_output(refs, actual);
    if (want.shape != actual.shape) {
      rep.fail("CUDA forward",
               "output shape " + nq::shape_str(actual.shape) + ", expected " + nq::shape_str(want.shape));
    } else {
      for (size_t i = 0; i < want.v.size(); ++i)
        if (!close(actual.v[i], want.v[i], tol))
          rep.fail(
              "CUDA forward (vs reference given the output)",
              "output[" + std::to_string(i) + "]: CUDA " + fmt(actual.v[i]) + ", expected " + fmt(want.v[i]));
    }
    same_forward = host_values(out_gpu) == out_cpu.to_vector<double>();
  } else {
    compare(out_gpu, out_cpu, tol, "forward CUDA vs CPU", "output", rep);
  }
  for (size_t k = 0; k < c.inputs.size(); ++k)
    if (c.inputs[k].kind == InputKind::Random && host_values(gpu.args[k]) != refs[k].v)
      rep.fail("CUDA forward", "input " + std::to_string(k) + " was modified by the op");

  // ---- gradients, same upstream R on both ----
  if (grad) {
    if (!out_cpu.requires_grad()) {
      rep.fail("gradient", "the CPU output does not require grad (table error)");
    } else if (!out_gpu.requires_grad()) {
      rep.fail("gradient", "the CUDA output does not require grad although its inputs do");
    } else {
      std::vector<double> R(static_cast<size_t>(out_cpu.numel()));
      for (auto& r : R) r = 2.0 * g.uniform() - 1.0;
      const nq::Tensor up = nq::from_vector(R, out_cpu.shape(), nq::kFloat32);
      bool ok = true;
      try {
        out_cpu.backward(up);
      } catch (const std::exception& e) {
        rep.fail("CPU backward", std::string("threw: ") + e.what());
        ok = false;
      }
      try {
        out_gpu.backward(up.to(nqgpu::gpu()));
      } catch (const std::exception& e) {
        rep.fail("CUDA backward", std::string("threw: ") + e.what());
        ok = false;
      }
      for (size_t k = 0; ok && k < c.inputs.size(); ++k) {
        if (!c.inputs[k].differentiable()) continue;
        const std::string where = "input " + std::to_string(k) + " (" +
                                  nqtest::layout_name(c.inputs[k].layout) + ", stored " +
                                  nq::shape_str(st[k].shape) + ") .grad";
        const nq::Tensor gc = cpu.leaves[k].grad(), gg = gpu.leaves[k].grad();
        if (gg.defined() && !gg.device().is_cuda())
          rep.fail("gradient", where + " is not on the CUDA device");
        if (gg.defined() && gg.dtype() != nq::kFloat32)
          rep.fail("gradient", where + " has dtype " + nq::dtype_name(gg.dtype()));
        if (!gc.defined() || !gg.defined()) {
          // Acceptable only where the other side's gradient is all zeros.
          const nq::Tensor other = gc.defined() ? gc : gg;
          if (other.defined())
            for (double v : host_values(other))
              if (v != 0.0) {
                rep.fail("gradient",
                         where + (gc.defined() ? " is missing on CUDA" : " is missing on the CPU"));
                break;
              }
          continue;
        }
        if (same_forward) {
          compare(gg, gc, tol, "gradient CUDA vs CPU", where, rep);
          continue;
        }
        // A random op whose GPU mask differs from the CPU's: out = x * m, so
        // d/dx sum(out * R) = R * out / x element-wise (inputs are away from 0).
        if (c.inputs.size() != 1 || out_gpu.shape() != c.inputs[k].shape) {
          rep.fail("gradient", where + ": cannot check the gradient of a random op of this form");
          continue;
        }
        const std::vector<double> o = host_values(out_gpu);
        std::vector<double> want(st[k].v.size(), 0.0);
        int64_t i = 0;
        nqtest::for_each_index(c.inputs[k].shape, [&](const std::vector<int64_t>& idx) {
          want[nqtest::stored_flat(c.inputs[k], st[k].shape, idx)] += R[i] * o[i] / refs[k].v[i];
          ++i;
        });
        compare(gg, nq::from_vector(want, st[k].shape, nq::kFloat64), tol, "gradient (R*out/x)", where, rep);
      }
    }
  }
  rep.finish();
  return rep.ok();
}

}  // namespace

TEST_CASE("op table on CUDA: float32 forward and input gradients equal the CPU backend's") {
  const std::vector<OpCase> table = op_table();
  REQUIRE(table.size() > 150);
  int run = 0;
  std::vector<std::string> failed;
  for (const auto& c : table) {
    if (!nqtest::selected(c)) continue;
    ++run;
    bool ok = false;
    try {
      ok = run_case_on_cuda(c);
    } catch (const std::exception& e) {  // e.g. a sticky CUDA error surfacing in a copy
      FAIL_CHECK("op case '" << c.name << "': threw outside the checks: " << e.what());
    }
    if (!ok) failed.push_back(c.name);
  }
  std::string list;
  for (size_t i = 0; i < failed.size() && i < 60; ++i) list += "\n  " + failed[i];
  if (failed.size() > 60) list += "\n  ... and " + std::to_string(failed.size() - 60) + " more";
  MESSAGE("op table on CUDA: " << run - static_cast<int>(failed.size()) << " of " << run << " cases pass"
                               << std::string(failed.empty() ? "" : "; failing:") << list);
  CHECK(failed.empty());
  if (!std::getenv("NQ_OP_FILTER")) CHECK(run == static_cast<int>(table.size()));  // nothing skipped
}
