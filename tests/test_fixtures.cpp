// Forward values and gradients against PyTorch, from the fixtures that
// tools/make_fixtures.py writes (tests/fixtures/ops/*.safetensors, float64).
// Each case runs in float64 (tolerance 1e-9) and float32 (tolerance 2e-4,
// relative to the largest magnitude in the reference).
#include <doctest/doctest.h>

#include <cmath>
#include <nextquill/io/safetensors.hpp>
#include <nextquill/nextquill.hpp>
#include <string>

#ifndef NQ_TEST_DATA_DIR
#define NQ_TEST_DATA_DIR "tests/fixtures"
#endif

namespace {

using nq::Tensor;

struct Fixture {
  nq::io::SafetensorsFile file;
  nq::DType dtype;

  Tensor get(const std::string& name) const {
    auto it = file.tensors.find(name);
    REQUIRE_MESSAGE(it != file.tensors.end(), "fixture has no tensor '" << name << "'");
    const auto& raw = it->second;
    std::vector<double> v = nq::io::as_f64(raw);
    if (raw.dtype == "I64") {
      std::vector<int64_t> iv(v.begin(), v.end());
      return nq::from_vector(iv, raw.shape);
    }
    return nq::from_vector(v, raw.shape, dtype);
  }
  Tensor param(const std::string& name) const { return get(name).requires_grad_(); }
  double meta(const std::string& key) const { return std::stod(file.metadata.at(key)); }
};

Fixture load(const std::string& name, nq::DType dt) {
  return {nq::io::read_safetensors(std::string(NQ_TEST_DATA_DIR) + "/ops/" + name + ".safetensors"), dt};
}

double tol_for(nq::DType dt) { return dt == nq::kFloat64 ? 1e-9 : 2e-4; }

// max |a - b| <= tol * max(1, max |b|)
void check_close(const Tensor& got, const Tensor& want, nq::DType dt, const std::string& what) {
  REQUIRE_MESSAGE(got.defined(), what << ": no value (missing gradient?)");
  REQUIRE_MESSAGE(got.shape() == want.shape(),
                  what << ": shape " << nq::shape_str(got.shape()) << " vs " << nq::shape_str(want.shape()));
  auto a = got.to_vector<double>(), b = want.to_vector<double>();
  double scale = 1, err = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(b[i]));
    if (!(std::abs(a[i] - b[i]) <= err)) {
      err = std::abs(a[i] - b[i]);
      at = i;
    }
  }
  CHECK_MESSAGE(err <= tol_for(dt) * scale, what << " (" << nq::dtype_name(dt) << "): max error " << err
                                                 << " at element " << at << " (got " << a[at] << ", want "
                                                 << b[at] << ")");
}

const nq::DType kDtypes[] = {nq::kFloat64, nq::kFloat32};

}  // namespace

TEST_CASE("fixtures: softmax and log_softmax match PyTorch") {
  for (auto dt : kDtypes)
    for (std::string name : {"softmax_lastdim", "softmax_dim1", "softmax_large", "log_softmax_lastdim",
                             "log_softmax_dim1", "log_softmax_large"}) {
      CAPTURE(name);
      Fixture f = load(name, dt);
      Tensor x = f.param("x");
      auto dim = static_cast<int64_t>(f.meta("dim"));
      Tensor y = name.rfind("log_", 0) == 0 ? nq::log_softmax(x, dim) : nq::softmax(x, dim);
      check_close(y, f.get("out"), dt, name + " forward");
      y.backward(f.get("gout"));
      check_close(x.grad(), f.get("grad_x"), dt, name + " grad x");
    }
}

TEST_CASE("fixtures: layer_norm and rms_norm match PyTorch") {
  for (auto dt : kDtypes) {
    {
      Fixture f = load("layer_norm", dt);
      Tensor x = f.param("x"), w = f.param("weight"), b = f.param("bias");
      Tensor y = nq::layer_norm(x, w, b, f.meta("eps"));
      check_close(y, f.get("out"), dt, "layer_norm forward");
      y.backward(f.get("gout"));
      check_close(x.grad(), f.get("grad_x"), dt, "layer_norm grad x");
      check_close(w.grad(), f.get("grad_weight"), dt, "layer_norm grad weight");
      check_close(b.grad(), f.get("grad_bias"), dt, "layer_norm grad bias");
    }
    {
      Fixture f = load("layer_norm_noaffine", dt);
      Tensor x = f.param("x");
      Tensor y = nq::layer_norm(x, Tensor(), Tensor(), f.meta("eps"));
      check_close(y, f.get("out"), dt, "layer_norm (no affine) forward");
      y.backward(f.get("gout"));
      check_close(x.grad(), f.get("grad_x"), dt, "layer_norm (no affine) grad x");
    }
    {
      Fixture f = load("rms_norm", dt);
      Tensor x = f.param("x"), w = f.param("weight");
      Tensor y = nq::rms_norm(x, w, f.meta("eps"));
      check_close(y, f.get("out"), dt, "rms_norm forward");
      y.backward(f.get("gout"));
      check_close(x.grad(), f.get("grad_x"), dt, "rms_norm grad x");
      check_close(w.grad(), f.get("grad_weight"), dt, "rms_norm grad weight");
    }
  }
}

TEST_CASE("fixtures: activations match PyTorch") {
  for (auto dt : kDtypes)
    for (std::string name : {"gelu_exact", "gelu_tanh", "silu"}) {
      CAPTURE(name);
      Fixture f = load(name, dt);
      Tensor x = f.param("x");
      Tensor y = name == "silu"        ? nq::silu(x)
                 : name == "gelu_tanh" ? nq::gelu(x, nq::GeluApprox::Tanh)
                                       : nq::gelu(x);
      check_close(y, f.get("out"), dt, name + " forward");
      y.backward(f.get("gout"));
      check_close(x.grad(), f.get("grad_x"), dt, name + " grad x");
    }
}

TEST_CASE("fixtures: attention with causal and padding masks matches PyTorch") {
  for (auto dt : kDtypes)
    for (std::string name : {"attention_causal", "attention_causal_leftpad", "attention_causal_rightpad",
                             "attention_rightpad", "attention_cross"}) {
      CAPTURE(name);
      Fixture f = load(name, dt);
      Tensor q = f.param("q"), k = f.param("k"), v = f.param("v");
      nq::AttentionOptions o;
      o.causal = f.meta("causal") != 0;
      o.scale = f.meta("scale");
      if (f.file.tensors.count("valid")) o.key_padding_mask = f.get("valid");
      Tensor y = nq::scaled_dot_product_attention(q, k, v, o);
      check_close(y, f.get("out"), dt, name + " forward");
      y.backward(f.get("gout"));
      check_close(q.grad(), f.get("grad_q"), dt, name + " grad q");
      check_close(k.grad(), f.get("grad_k"), dt, name + " grad k");
      check_close(v.grad(), f.get("grad_v"), dt, name + " grad v");
    }
}

TEST_CASE("fixtures: cross_entropy with ignore_index and per-token weights matches PyTorch") {
  for (auto dt : kDtypes) {
    {
      Fixture f = load("cross_entropy_mean", dt);
      Tensor z = f.param("logits");
      nq::CrossEntropyOptions o;
      o.ignore_index = static_cast<int64_t>(f.meta("ignore_index"));
      Tensor loss = nq::cross_entropy(z, f.get("targets"), o);
      check_close(loss, f.get("out"), dt, "cross_entropy mean forward");
      loss.backward(f.get("gout"));
      check_close(z.grad(), f.get("grad_logits"), dt, "cross_entropy mean grad");
    }
    const std::pair<nq::Reduction, std::string> reductions[] = {
        {nq::Reduction::Sum, "sum"},
        {nq::Reduction::Mean, "mean"},
        {nq::Reduction::WeightedMean, "weighted_mean"},
        {nq::Reduction::None, "none"}};
    for (const auto& [red, key] : reductions) {
      CAPTURE(key);
      Fixture f = load("cross_entropy_weighted", dt);
      Tensor z = f.param("logits");
      nq::CrossEntropyOptions o;
      o.ignore_index = static_cast<int64_t>(f.meta("ignore_index"));
      o.weights = f.get("weights");
      o.reduction = red;
      Tensor loss = nq::cross_entropy(z, f.get("targets"), o);
      check_close(loss, f.get("loss_" + key), dt, "weighted cross_entropy forward, " + key);
      if (red == nq::Reduction::None)
        loss.backward(f.get("gout_none"));
      else
        loss.backward();
      check_close(z.grad(), f.get("grad_logits_" + key), dt, "weighted cross_entropy grad, " + key);
    }
  }
}
