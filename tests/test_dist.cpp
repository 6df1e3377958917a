// Data-parallel machinery without MPI: the autograd grad-ready hook, the
// single-process LocalProcessGroup, sharding, rank-0 checkpointing, and
// DistributedDataParallel's buckets driven by an in-process fake of a 2-rank
// group. The real 2-rank run is tests/mpi/test_ddp.cpp (under mpirun).
#include <doctest/doctest.h>

#include <memory>
#include <nextquill/dist/dist.hpp>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace {

using nqtest::contains;
using nqtest::error_of;
using V = std::vector<double>;

nq::Tensor leaf(const V& v) { return nq::from_vector(v, {int64_t(v.size())}, nq::kFloat64).requires_grad_(); }

// Rank 0 of a pretend 2-rank group whose peer holds the same values, so an
// all-reduce doubles the buffer. Async all-reduces complete (double) only on
// wait() or on their second test(), like a transfer that takes a while; the
// buffers they were started on are recorded in order.
class TwinProcessGroup final : public nq::dist::ProcessGroup {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 2; }
  std::string backend() const override { return "twin"; }
  std::vector<std::pair<const void*, int64_t>> started;

 protected:
  static void twice(void* data, int64_t n) {
    auto* x = static_cast<double*>(data);
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] + x[i];
  }
  struct TwinWork final : nq::dist::Work {
    void* data;
    int64_t n;
    int tests = 0;
    bool done = false;
    TwinWork(void* d, int64_t k) : data(d), n(k) {}
    bool test() override {
      if (!done && ++tests >= 2) wait();
      return done;
    }
    void wait() override {
      if (!done) twice(data, n);
      done = true;
    }
  };
  void do_all_reduce_sum(void* data, int64_t n, nq::DType dt) override {
    REQUIRE(dt == nq::kFloat64);
    twice(data, n);
  }
  std::unique_ptr<nq::dist::Work> do_all_reduce_sum_async(void* data, int64_t n, nq::DType dt) override {
    REQUIRE(dt == nq::kFloat64);
    started.emplace_back(data, n);
    return std::make_unique<TwinWork>(data, n);
  }
  void do_broadcast(void*, int64_t, int) override {}  // the peer holds the same bytes
  void do_barrier() override {}
};

nq::CausalLMConfig tiny() { return nq::CausalLMConfig::gpt2(32, 8, 16, 2, 2); }

nq::Tensor tokens(uint64_t seed, int64_t rows) {
  nq::Generator g(seed);
  std::vector<int64_t> ids(size_t(rows * 9));
  for (auto& x : ids) x = int64_t(g.next_u64() % 32);
  return nq::from_vector(ids, {rows, 9});
}

nq::Tensor loss_of(const nq::CausalLM& m, const nq::Tensor& d) {
  const int64_t B = d.size(0), T = d.size(1) - 1;
  return nq::cross_entropy(m.forward(d.narrow(1, 0, T)).reshape({B * T, 32}),
                           d.narrow(1, 1, T).contiguous().reshape({B * T}));
}

V grads(const nq::CausalLM& m) { return m.flat().grad.to_vector<double>(); }

}  // namespace

TEST_CASE("autograd: grad_ready_hook runs once per pass, after the leaf's last gradient") {
  nq::Tensor w = leaf({1, 2, 3});
  nq::Tensor x = nq::from_vector(V{4, 5, 6}, {3}, nq::kFloat64);
  nq::Tensor unused = leaf({7});
  std::vector<V> seen;
  int unused_calls = 0;
  w.meta().grad_ready_hook = [&] { seen.push_back(w.grad().to_vector<double>()); };
  unused.meta().grad_ready_hook = [&] { ++unused_calls; };
  // w reaches the loss three times: through w*x and twice through w*w.
  nq::Tensor y = ((w * x).sum() + (w * w).sum()) * 2.0;
  y.backward();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == V{2 * (4 + 2 * 1), 2 * (5 + 2 * 2), 2 * (6 + 2 * 3)});  // d/dw = 2 (x + 2w)
  CHECK(unused_calls == 0);                                                // not reached by this pass
  // Backward on the leaf itself, and a second pass: once more each.
  w.backward(nq::from_vector(V{1, 1, 1}, {3}, nq::kFloat64));
  CHECK(seen.size() == 2);
  w.meta().grad_ready_hook = nullptr;
}

TEST_CASE("dist: LocalProcessGroup is a no-op rank 0 of 1") {
  nq::dist::LocalProcessGroup pg;
  CHECK(pg.rank() == 0);
  CHECK(pg.world_size() == 1);
  CHECK(pg.backend() == "local");
  V v{1.5, -2};
  pg.all_reduce_sum(v.data(), 2);
  CHECK(v == V{1.5, -2});
  CHECK(pg.all_reduce_sum(3.25) == 3.25);
  CHECK(pg.all_reduce_sum_async(v.data(), 2)->test());
  pg.broadcast(v.data(), 16, 0);
  pg.barrier();
  CHECK(pg.broadcast_value(int64_t(42), 0) == 42);
  CHECK(contains(error_of([&] { pg.broadcast(v.data(), 16, 1); }), "root 1"));
  CHECK(contains(error_of([&] { pg.all_reduce_sum(v.data(), -1); }), "negative"));
  CHECK(nq::dist::all_reduce_mean(pg, 2.5) == 2.5);
}

TEST_CASE("dist: shard splits a global batch into contiguous equal slices") {
  for (int world : {1, 2, 4}) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      const auto s = nq::dist::shard(8, r, world);
      CHECK(s.offset == next);
      CHECK(s.size == 8 / world);
      next = s.end();
    }
    CHECK(next == 8);
  }
  CHECK(contains(error_of([] { nq::dist::shard(7, 0, 2); }), "not divisible"));
  CHECK(contains(error_of([] { nq::dist::shard(8, 2, 2); }), "rank 2"));
  nq::dist::LocalProcessGroup pg;
  nq::Tensor b = tokens(1, 4);
  CHECK(nq::dist::shard_batch(b, pg).to_vector<int64_t>() == b.to_vector<int64_t>());
}

TEST_CASE("dist: on_checkpoint_rank runs the writer on rank 0 and rethrows its error") {
  nq::dist::LocalProcessGroup pg;
  CHECK(nq::dist::is_checkpoint_rank(pg));
  int calls = 0;
  nq::dist::on_checkpoint_rank(pg, [&] { ++calls; });
  CHECK(calls == 1);
  CHECK(contains(error_of([&] { nq::dist::on_checkpoint_rank(pg, [] { nq::fail("w", "disk full"); }); }),
                 "disk full"));
}

TEST_CASE("dist: with one process DDP installs nothing and changes nothing") {
  nq::CausalLM a(tiny(), 3, nq::kFloat64), b(tiny(), 3, nq::kFloat64);
  nq::dist::LocalProcessGroup pg;
  nq::dist::DistributedDataParallel ddp(a, pg);
  nq::dist::broadcast_parameters(a, pg);
  CHECK(ddp.num_buckets() == 0);
  for (const auto& s : a.flat().slots) CHECK_FALSE(s.param.meta_ptr()->grad_ready_hook);
  for (nq::CausalLM* m : {&a, &b}) {
    m->zero_grad();
    loss_of(*m, tokens(5, 2)).backward();
  }
  ddp.synchronize();
  nq::dist::all_reduce_gradients(a, pg);
  CHECK(grads(a) == grads(b));
}

TEST_CASE("dist: DDP starts bucket all-reduces in order during backward and averages") {
  nq::CausalLM ref(tiny(), 3, nq::kFloat64), m(tiny(), 3, nq::kFloat64);
  TwinProcessGroup pg;
  nq::dist::DDPOptions o;
  o.bucket_bytes = 4 << 10;
  nq::dist::DistributedDataParallel ddp(m, pg, o);
  REQUIRE(ddp.num_buckets() >= 3);
  // Buckets tile the flat gradient buffer from its end to its start.
  int64_t end = m.flat().grad.numel();
  for (int64_t i = 0; i < ddp.num_buckets(); ++i) {
    const auto [b, e] = ddp.bucket_range(i);
    CHECK(e == end);
    CHECK(b < e);
    end = b;
  }
  CHECK(end == 0);

  const nq::Tensor batch = tokens(7, 3);
  ref.zero_grad();
  loss_of(ref, batch).backward();
  m.zero_grad();
  loss_of(m, batch).backward();
  // Every bucket was started by the hooks, in bucket order, before synchronize().
  REQUIRE(int64_t(pg.started.size()) == ddp.num_buckets());
  const double* g0 = m.flat().grad.data_ptr<double>();
  for (int64_t i = 0; i < ddp.num_buckets(); ++i) {
    const auto [b, e] = ddp.bucket_range(i);
    CHECK(pg.started[size_t(i)].first == g0 + b);
    CHECK(pg.started[size_t(i)].second == e - b);
  }
  ddp.synchronize();
  CHECK(ddp.buckets_started_in_backward() == ddp.num_buckets());
  CHECK(grads(m) == grads(ref));  // (g + g) / 2 == g exactly

  // A second backward without synchronize() is refused.
  pg.started.clear();
  loss_of(m, batch).backward();
  CHECK(contains(error_of([&] { loss_of(m, batch).backward(); }), "synchronize()"));
}

TEST_CASE("dist: DDP no_sync defers the all-reduce of accumulation micro-batches") {
  nq::CausalLM ref(tiny(), 4, nq::kFloat64), m(tiny(), 4, nq::kFloat64);
  TwinProcessGroup pg;
  nq::dist::DDPOptions o;
  o.bucket_bytes = 4 << 10;
  nq::dist::DistributedDataParallel ddp(m, pg, o);
  ref.zero_grad();
  m.zero_grad();
  for (uint64_t micro = 0; micro < 2; ++micro) {
    const nq::Tensor batch = tokens(10 + micro, 2);
    loss_of(ref, batch).backward();
    if (micro == 0) {
      auto guard = ddp.no_sync();
      loss_of(m, batch).backward();
      CHECK(pg.started.empty());
    } else {
      loss_of(m, batch).backward();
    }
  }
  CHECK(int64_t(pg.started.size()) == ddp.num_buckets());
  ddp.synchronize();
  CHECK(grads(m) == grads(ref));
  // all_reduce_gradients (no hooks) gives the same average.
  nq::dist::all_reduce_gradients(ref, pg, 4 << 10);
  CHECK(grads(ref) == grads(m));
}
