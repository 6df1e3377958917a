// nextquill_test_ddp: data-parallel training over MPI (run as `mpirun -np 2`,
// see tests/mpi/CMakeLists.txt). A small GPT-2-layout CausalLM in float64
// takes kSteps AdamW steps with gradient clipping on random token windows:
//
//   * every rank trains with DDP on its shard of each global batch of
//     world * kRowsPerRank rows, once with the all-reduce overlapped with
//     backward (DistributedDataParallel, small buckets) and once after it
//     (all_reduce_gradients);
//   * rank 0 also trains the same model in-process on the whole global batch
//     (no dist calls at all), and once more through the DDP API on a
//     LocalProcessGroup (must be bit-identical: world size 1 is a no-op).
//
// Checks: DDP parameters == 1-process parameters within kTol (relative), the
// two DDP variants and all ranks bit-identical, every bucket started during
// backward, only rank 0 writes checkpoints and the others can read them as
// soon as the call returns, and a failed write raises on every rank.
// Any failure prints a message and aborts the whole job (MPI_Abort), so no
// rank is left waiting in a collective.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nextquill/dist/dist.hpp>
#include <nextquill/dist/mpi.hpp>
#include <nextquill/nextquill.hpp>
#include <string>
#include <vector>

namespace {

namespace dist = nq::dist;

constexpr int64_t kVocab = 64, kCtx = 16, kDModel = 32, kLayers = 2, kHeads = 2;
constexpr int64_t kRowsPerRank = 4, kSteps = 5;
constexpr double kMaxNorm = 0.5;  // below the gradient norms seen here, so clipping is exercised
constexpr int64_t kBucketBytes = 16 << 10;
// The bar. In float64 the two runs differ only by the rounding of
// the loss/gradient sums (mean of two half-batch means vs one mean), ~1e-16
// relative, which 5 AdamW steps amplify by orders of magnitude at most.
constexpr double kTol = 1e-6;

int g_rank = -1;
std::filesystem::path g_scratch;  // rank 0 removes it, also on failure

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "nextquill_test_ddp: FAIL (rank %d): %s\n", g_rank, msg.c_str());
  std::fflush(stderr);
  std::error_code ec;
  if (g_rank == 0 && !g_scratch.empty()) std::filesystem::remove_all(g_scratch, ec);
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}
void expect(bool ok, const std::string& msg) {
  if (!ok) die(msg);
}

nq::CausalLMConfig config() { return nq::CausalLMConfig::gpt2(kVocab, kCtx, kDModel, kLayers, kHeads); }

// Global batch `step`: (rows, kCtx + 1) random tokens, the same on every rank.
// Fixed-length windows: every row has kCtx loss terms, so the mean of the
// per-rank mean losses is exactly the global mean loss.
nq::Tensor global_batch(int64_t step, int64_t rows) {
  nq::Generator g(uint64_t(1000 + step));
  std::vector<int64_t> ids(size_t(rows * (kCtx + 1)));
  for (auto& x : ids) x = int64_t(g.next_u64() % uint64_t(kVocab));
  return nq::from_vector(ids, {rows, kCtx + 1});
}

nq::Tensor lm_loss(const nq::CausalLM& m, const nq::Tensor& d) {
  const int64_t B = d.size(0), T = d.size(1) - 1;
  nq::Tensor logits = m.forward(d.narrow(1, 0, T));
  return nq::cross_entropy(logits.reshape({B * T, kVocab}), d.narrow(1, 1, T).contiguous().reshape({B * T}));
}

enum class Sync { None, Overlap, AfterBackward };

struct Run {
  std::vector<double> losses, norms;  // norms: gradient norm before clipping (of the averaged gradient)
  nq::Tensor first_grad;              // the (averaged) flat gradient of step 1, before clipping
  int64_t buckets = 0;
  int64_t min_started_in_backward = -1;  // over steps
  double seconds = 0;
};

// kSteps of AdamW on `model`. pg == nullptr: plain single-process training on
// the whole global batch, no dist calls. Otherwise DDP on pg's shard.
Run train(nq::CausalLM& model, dist::ProcessGroup* pg, Sync mode, int64_t global_rows,
          const std::string& ckpt = "") {
  const auto t0 = std::chrono::steady_clock::now();
  nq::optim::AdamWOptions ao;
  ao.lr = 1e-2, ao.beta1 = 0.9, ao.beta2 = 0.95;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model.named_parameters(), 0.1), ao);
  std::unique_ptr<dist::DistributedDataParallel> ddp;
  if (pg) {
    dist::broadcast_parameters(model, *pg);
    if (mode == Sync::Overlap) {
      dist::DDPOptions o;
      o.bucket_bytes = kBucketBytes;
      ddp = std::make_unique<dist::DistributedDataParallel>(model, *pg, o);
    }
  }
  Run r;
  for (int64_t step = 0; step < kSteps; ++step) {
    nq::Tensor batch = global_batch(step, global_rows);
    nq::Tensor mine = pg ? dist::shard_batch(batch, *pg) : batch;
    model.zero_grad();
    nq::Tensor loss = lm_loss(model, mine);
    loss.backward();
    if (mode == Sync::Overlap) {
      ddp->synchronize();
      const int64_t s = ddp->buckets_started_in_backward();
      r.min_started_in_backward = r.min_started_in_backward < 0 ? s : std::min(r.min_started_in_backward, s);
      r.buckets = ddp->num_buckets();
    } else if (mode == Sync::AfterBackward) {
      dist::all_reduce_gradients(model, *pg, kBucketBytes);
    }
    if (step == 0) r.first_grad = model.flat().grad.clone();
    r.norms.push_back(nq::optim::clip_grad_norm(opt.parameters(), kMaxNorm));
    opt.step();
    r.losses.push_back(pg ? dist::all_reduce_mean(*pg, loss.item()) : loss.item());
  }
  if (!ckpt.empty()) {
    nq::io::TrainState st;
    st.step = kSteps;
    dist::save_checkpoint(*pg, ckpt, model, &opt, nullptr, st, config().to_json().dump());
    // Right after the call, every rank must be able to read rank 0's file.
    nq::CausalLM loaded(config(), 99, nq::kFloat64);
    nq::optim::AdamW lopt(nq::optim::make_param_groups(loaded.named_parameters(), 0.1), ao);
    nq::io::load_checkpoint(ckpt, loaded, &lopt, nullptr);
    const double* a = model.flat().data.data_ptr<double>();
    const double* b = loaded.flat().data.data_ptr<double>();
    expect(std::equal(a, a + model.flat().data.numel(), b),
           "parameters loaded from rank 0's checkpoint differ from this rank's");
    expect(lopt.step_count() == kSteps, "optimizer step count not restored from the checkpoint");
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

struct Diff {
  double rel = 0;       // max over tensors of max|a-b| / max|b|
  double elem_rel = 0;  // max over elements of |a-b| / |b| (elements with |b| > 1e-3 * max|b|)
  std::string worst;    // tensor with the largest `rel`
  bool bitwise = true;
};

Diff compare(const nq::CausalLM& a, const nq::CausalLM& b) {
  Diff d;
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  expect(pa.size() == pb.size(), "models have different parameter counts");
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto va = pa[i].second.contiguous().to_vector<double>();
    const auto vb = pb[i].second.contiguous().to_vector<double>();
    double diff = 0, scale = 0;
    for (size_t k = 0; k < va.size(); ++k) {
      diff = std::max(diff, std::abs(va[k] - vb[k]));
      scale = std::max(scale, std::abs(vb[k]));
      d.bitwise = d.bitwise && va[k] == vb[k];
    }
    for (size_t k = 0; k < va.size(); ++k)
      if (std::abs(vb[k]) > 1e-3 * scale)
        d.elem_rel = std::max(d.elem_rel, std::abs(va[k] - vb[k]) / std::abs(vb[k]));
    const double rel = scale > 0 ? diff / scale : diff;
    if (rel >= d.rel) d.rel = rel, d.worst = pa[i].first;
  }
  return d;
}

// max |a - b| / max |b| over all elements.
double max_rel(const nq::Tensor& a, const nq::Tensor& b) {
  const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  expect(va.size() == vb.size(), "gradient buffers differ in size");
  double diff = 0, scale = 0;
  for (size_t k = 0; k < va.size(); ++k) {
    diff = std::max(diff, std::abs(va[k] - vb[k]));
    scale = std::max(scale, std::abs(vb[k]));
  }
  return scale > 0 ? diff / scale : diff;
}

void print_run(const char* name, const Run& r) {
  std::printf("  %-28s loss", name);
  for (double l : r.losses) std::printf(" %.10f", l);
  std::printf("\n  %-28s grad norm", "");
  for (double n : r.norms) std::printf(" %.6f", n);
  std::printf("  (%.3f s)\n", r.seconds);
}

int run(dist::MPIProcessGroup& pg) {
  const int rank = pg.rank(), world = pg.world_size();
  expect(world >= 2, "run with at least 2 ranks (mpirun -np 2), got world size " + std::to_string(world));
  const int64_t global_rows = world * kRowsPerRank;
  if (rank == 0)
    std::printf(
        "nextquill_test_ddp: %d ranks (%s), CausalLM gpt2 V%lld ctx%lld d%lld L%lld float64, %lld AdamW "
        "steps, "
        "global batch %lld = %d x %lld rows, clip %.2f, buckets of %lld bytes\n",
        world, pg.backend().c_str(), (long long)kVocab, (long long)kCtx, (long long)kDModel,
        (long long)kLayers, (long long)kSteps, (long long)global_rows, world, (long long)kRowsPerRank,
        kMaxNorm, (long long)kBucketBytes);

  // Shared scratch directory, named after rank 0's pid.
  const auto pid = pg.broadcast_value(int64_t(getpid()), 0);
  const auto dir = std::filesystem::temp_directory_path() / ("nq_ddp_test_" + std::to_string(pid));
  if (rank == 0) {
    std::filesystem::create_directories(dir);
    g_scratch = dir;
  }
  pg.barrier();

  // Different seeds per rank: broadcast_parameters must make them equal.
  nq::CausalLM overlap(config(), uint64_t(1 + rank), nq::kFloat64);
  nq::CausalLM after(config(), uint64_t(1 + rank), nq::kFloat64);
  const std::string ckpt = (dir / "ddp.safetensors").string();
  const Run r_overlap = train(overlap, &pg, Sync::Overlap, global_rows, ckpt);
  const Run r_after = train(after, &pg, Sync::AfterBackward, global_rows);

  // Overlap really happened: with every parameter used, each bucket's
  // all-reduce was started from a grad-ready hook during backward.
  expect(r_overlap.buckets >= 2, "expected several buckets, got " + std::to_string(r_overlap.buckets));
  expect(r_overlap.min_started_in_backward == r_overlap.buckets,
         "only " + std::to_string(r_overlap.min_started_in_backward) + " of " +
             std::to_string(r_overlap.buckets) + " buckets started during backward");

  // All ranks hold the same parameters: rank 1.. send theirs to rank 0.
  for (int src = 1; src < world; ++src) {
    nq::Tensor theirs = overlap.flat().data.clone();
    pg.broadcast(theirs, src);
    if (rank == 0) {
      const double* a = overlap.flat().data.data_ptr<double>();
      const double* b = theirs.data_ptr<double>();
      expect(std::equal(a, a + theirs.numel(), b),
             "rank " + std::to_string(src) + "'s parameters differ from rank 0's after training");
    }
  }

  // Only rank 0 writes; a failed write raises on every rank.
  int writes = 0;
  dist::on_checkpoint_rank(pg, [&] { ++writes; });
  expect(writes == (rank == 0 ? 1 : 0), "on_checkpoint_rank ran the writer on rank " + std::to_string(rank));
  expect(pg.all_reduce_sum(double(writes)) == 1.0, "the checkpoint writer ran on more than one rank");
  bool raised = false;
  try {
    dist::on_checkpoint_rank(pg, [] { nq::fail("test", "disk full"); });
  } catch (const nq::Error& e) {
    raised = std::string(e.what()).find("disk full") != std::string::npos;
  }
  expect(raised, "a failed checkpoint write on rank 0 did not raise (with rank 0's message) on this rank");
  expect(std::filesystem::exists(ckpt), "no checkpoint at " + ckpt);

  if (rank == 0) {
    // The 1-process reference on the whole global batch, with no dist calls,
    // and the same through the DDP API on a LocalProcessGroup.
    nq::CausalLM ref(config(), 1, nq::kFloat64);
    nq::CausalLM local(config(), 1, nq::kFloat64);
    dist::LocalProcessGroup lpg;
    const Run r_ref = train(ref, nullptr, Sync::None, global_rows);
    const Run r_local = train(local, &lpg, Sync::Overlap, global_rows);

    print_run("1 process, global batch", r_ref);
    print_run("LocalProcessGroup + DDP", r_local);
    print_run("DDP overlapped", r_overlap);
    print_run("DDP after backward", r_after);
    std::printf("  buckets: %lld, started during backward: %lld per step\n", (long long)r_overlap.buckets,
                (long long)r_overlap.min_started_in_backward);

    const Diff d_local = compare(local, ref);
    expect(d_local.bitwise, "LocalProcessGroup training is not bit-identical to plain training");
    const Diff d_after = compare(after, overlap);
    expect(d_after.bitwise, "overlapped and after-backward all-reduce differ (max rel " +
                                std::to_string(d_after.rel) + " in " + d_after.worst + ")");
    const Diff d = compare(overlap, ref);
    // AdamW and clipping hide a wrong gradient scale (both are invariant to
    // it), so the averaged gradient and its norm are checked directly too.
    const double grad_rel = max_rel(r_overlap.first_grad, r_ref.first_grad);
    double loss_rel = 0, norm_rel = 0;
    for (size_t s = 0; s < size_t(kSteps); ++s) {
      loss_rel =
          std::max(loss_rel, std::abs(r_overlap.losses[s] - r_ref.losses[s]) / std::abs(r_ref.losses[s]));
      norm_rel = std::max(norm_rel, std::abs(r_overlap.norms[s] - r_ref.norms[s]) / std::abs(r_ref.norms[s]));
    }
    std::printf("  step-1 averaged gradient vs 1 process: max relative error %.3e; gradient norms %.3e\n",
                grad_rel, norm_rel);
    expect(grad_rel <= kTol,
           "the averaged gradient differs from the 1-process gradient: max relative error " +
               std::to_string(grad_rel));
    expect(norm_rel <= kTol, "gradient norms differ from the 1-process run");
    std::printf(
        "  DDP (%d ranks) vs 1 process after %lld steps: max relative error %.3e per tensor (worst: %s), "
        "%.3e per element; losses %.3e; bit-identical: %s\n",
        world, (long long)kSteps, d.rel, d.worst.c_str(), d.elem_rel, loss_rel, d.bitwise ? "yes" : "no");
    expect(d.rel <= kTol, "DDP parameters differ from the 1-process run: max relative error " +
                              std::to_string(d.rel) + " in " + d.worst + " > " + std::to_string(kTol));
    expect(d.elem_rel <= kTol,
           "DDP parameters differ from the 1-process run: max per-element relative error " +
               std::to_string(d.elem_rel) + " > " + std::to_string(kTol));
    expect(loss_rel <= kTol, "DDP losses differ from the 1-process run");
    std::filesystem::remove_all(dir);
    std::printf("nextquill_test_ddp: PASS\n");
  }
  pg.barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::unique_ptr<dist::MPIContext> mpi;
  try {
    mpi = std::make_unique<dist::MPIContext>(&argc, &argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nextquill_test_ddp: FAIL: %s\n", e.what());
    return 1;
  }
  // Errors are caught while MPI is still up, so die() can abort every rank.
  try {
    nq::set_num_threads(1);  // one thread per rank: ranks share the cores
    dist::MPIProcessGroup pg;
    g_rank = pg.rank();
    return run(pg);
  } catch (const std::exception& e) {
    die(e.what());
  }
}
