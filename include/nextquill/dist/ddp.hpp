#pragma once
// Distributed data parallel (DDP) training over a ProcessGroup: every rank
// holds a full copy of the model, computes the gradient of the mean loss over
// its shard of each global batch, and the ranks average their gradients
// before the (identical) optimizer step, so all copies stay equal and the
// step is the one a single process would take on the whole global batch.
//
//   broadcast_parameters(model, pg)   rank 0's weights to every rank (at start)
//   shard / shard_batch               this rank's contiguous rows of a global batch
//   DistributedDataParallel ddp(...)  averages gradients, overlapping the
//                                     all-reduce with backward
//   all_reduce_gradients(model, pg)   the same average, after backward
//   save_checkpoint(pg, ...)          only rank 0 writes; the others wait
//
// Gradients live in the model's one flat gradient buffer (nn/module.hpp), cut
// into buckets of about DDPOptions::bucket_bytes: contiguous ranges, last
// parameters first because backward produces their gradients first. With
// overlap, each trainable parameter gets a grad-ready hook (autograd engine):
// when every parameter of a bucket has its final gradient, a non-blocking
// all-reduce of that range starts while backward goes on; later hooks poll
// the transfers so MPI progresses. Buckets start strictly in order on every
// rank (bucket k only after k-1), because collectives must be issued in the
// same order everywhere; synchronize() starts any bucket backward never
// completed (e.g. one holding a parameter the loss did not use), waits for
// all and divides by the world size.
//
// With world_size() == 1 every function here returns at once: single-process
// training is bit-identical with and without these calls.
//
// See docs/distributed.md for a complete training loop.
#include <algorithm>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "../cpu/parallel.hpp"
#include "../io/checkpoint.hpp"
#include "../nn/module.hpp"
#include "process_group.hpp"

namespace nq::dist {

// PyTorch's default: large enough that per-message latency is amortised,
// small enough that the first buckets start well before backward ends.
inline constexpr int64_t kDefaultBucketBytes = int64_t(25) << 20;

// ---- data sharding -----------------------------------------------------------

// Rows [offset, offset + size) of a global batch: this rank's share.
struct Shard {
  int64_t offset = 0;
  int64_t size = 0;
  int64_t end() const { return offset + size; }
};

// Rank r of w takes the r-th of w equal contiguous slices, so the union over
// ranks, in rank order, is the global batch. The batch must divide evenly:
// gradients are averaged with equal weights per rank, which equals the
// global-batch mean only when every rank holds as many rows (and, for token
// losses, as many loss terms).
inline Shard shard(int64_t global_batch, int rank, int world) {
  const char* op = "dist.shard";
  NQ_CHECK(world >= 1, op, "world size must be positive, got ", world);
  NQ_CHECK(rank >= 0 && rank < world, op, "rank ", rank, " is outside [0, ", world, ")");
  NQ_CHECK(global_batch >= 0, op, "negative global batch ", global_batch);
  NQ_CHECK(global_batch % world == 0, op, "global batch ", global_batch,
           " is not divisible by the world size ", world,
           " (unequal shards would weight rows unequally in the averaged gradient)");
  const int64_t per = global_batch / world;
  return {rank * per, per};
}
inline Shard shard(int64_t global_batch, const ProcessGroup& pg) {
  return shard(global_batch, pg.rank(), pg.world_size());
}
// This rank's rows (dim 0) of a global batch, as a view.
inline Tensor shard_batch(const Tensor& global, const ProcessGroup& pg) {
  NQ_CHECK(global.defined() && global.dim() >= 1, "dist.shard_batch",
           "need a batch with a leading dimension, got ",
           global.defined() ? global.brief() : std::string("an undefined tensor"));
  const Shard s = shard(global.size(0), pg);
  return global.narrow(0, s.offset, s.size);
}

namespace detail {

inline const nn::FlatParameters& flat_of(const nn::Module& m, const char* op) {
  NQ_CHECK(m.is_flat(), op, m.type_name(),
           " has no flat parameters: call flatten_parameters() once the model is built");
  return m.flat();
}

// Every trainable parameter's .grad must still be its view of the flat
// gradient buffer, or the buffer all-reduced would not be what the optimizer
// reads.
inline void check_flat_grads(const nn::FlatParameters& f, const char* op) {
  for (const auto& s : f.slots) {
    if (s.grad_offset < 0) continue;
    const Tensor g = s.param.grad();
    NQ_CHECK(
        g.defined() && g.storage() == f.grad.storage() && g.offset() == f.grad.offset() + s.grad_offset, op,
        "the gradient of '", s.name,
        "' is not its view of the flat gradient buffer (dropped by zero_grad(set_to_none) or replaced?); "
        "zero gradients with Module::zero_grad(), which restores the views");
  }
}

// A hash of everything that must match across ranks for the collectives to
// line up: names, shapes, dtypes and trainability of parameters and buffers.
inline std::vector<int64_t> layout_fingerprint(const nn::Module& m) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  };
  int64_t numel = 0;
  auto add = [&](const std::string& name, const Tensor& t, bool trainable) {
    mix(name.data(), name.size());
    for (int64_t d : t.shape()) mix(&d, sizeof d);
    const auto dt = static_cast<uint8_t>(t.dtype());
    mix(&dt, 1);
    const char tr = trainable ? 1 : 0;
    mix(&tr, 1);
    numel += t.numel();
  };
  for (const auto& [n, t] : m.named_parameters()) add(n, t, t.requires_grad());
  for (const auto& [n, t] : m.named_buffers()) add(n, t, false);
  return {static_cast<int64_t>(h), numel};
}

// Fails on every rank when some rank's `local` differs from rank 0's (failing
// only on the odd one out would leave the others hanging in their next
// collective).
inline void check_same_on_all_ranks(ProcessGroup& pg, const std::vector<int64_t>& local, const char* op,
                                    const char* what) {
  std::vector<int64_t> root = local;
  pg.broadcast(root.data(), int64_t(root.size() * sizeof(int64_t)), 0);
  const bool differs = root != local;
  const double n = pg.all_reduce_sum(differs ? 1.0 : 0.0);
  if (n > 0)
    fail(op, what, " differs between ranks: ", int64_t(n), " rank(s) disagree with rank 0",
         differs ? " (this rank, " + std::to_string(pg.rank()) + ", is one of them)" : std::string());
}

struct BucketRange {
  int64_t begin = 0, end = 0;  // elements of the flat gradient buffer
  std::vector<size_t> slots;   // indices into FlatParameters::slots
};

// Contiguous ranges tiling the flat gradient buffer, from its end (the last
// parameters, whose gradients backward produces first) to its start, each
// closed once it holds at least `bucket_bytes` of gradients.
inline std::vector<BucketRange> make_buckets(const nn::FlatParameters& f, int64_t bucket_bytes,
                                             const char* op) {
  NQ_CHECK(bucket_bytes > 0, op, "bucket_bytes must be positive, got ", bucket_bytes);
  std::vector<BucketRange> out;
  if (!f.grad.defined()) return out;
  const auto esize = int64_t(element_size(f.grad.dtype()));
  BucketRange cur;
  cur.end = f.grad.numel();
  int64_t bytes = 0;
  for (size_t i = f.slots.size(); i-- > 0;) {
    const auto& s = f.slots[i];
    if (s.grad_offset < 0) continue;
    cur.slots.push_back(i);
    bytes += s.param.numel() * esize;
    if (bytes >= bucket_bytes) {
      cur.begin = s.grad_offset;
      out.push_back(std::move(cur));
      cur = BucketRange{};
      cur.end = s.grad_offset;
      bytes = 0;
    }
  }
  if (!cur.slots.empty()) out.push_back(std::move(cur));  // begin 0: the first trainable slot's offset
  return out;
}

// x[begin, end) /= world (exact for powers of two; a division, not a
// multiplication by 1/world, so it is correctly rounded for any world size).
inline void divide_range(const Tensor& flat_grad, int64_t begin, int64_t end, int world) {
  visit_float(flat_grad.dtype(), "dist.all_reduce_gradients", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* x = flat_grad.data_ptr<T>() + begin;
    const T w = T(world);
    cpu::parallel_for(0, end - begin, int64_t(1) << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) x[i] = x[i] / w;
    });
  });
}

}  // namespace detail

// ---- parameters ----------------------------------------------------------------

// Copies rank `root`'s parameters and buffers to every rank, so all start
// from the same weights (call once after building, or loading, the model).
// First checks that every rank has the same layout. One collective for all
// parameters when the model is flat.
inline void broadcast_parameters(nn::Module& m, ProcessGroup& pg, int root = 0) {
  const char* op = "dist.broadcast_parameters";
  if (pg.world_size() == 1) return;
  detail::check_same_on_all_ranks(pg, detail::layout_fingerprint(m), op,
                                  "the model layout (parameter and buffer names, shapes, dtypes)");
  NoGradGuard ng;
  const auto params = m.named_parameters();
  bool all_flat = m.is_flat() && m.flat().slots.size() == params.size();
  if (all_flat)
    for (const auto& [n, t] : params) all_flat = all_flat && t.storage() == m.flat().data.storage();
  auto bcast = [&](const Tensor& t) {
    if (t.is_contiguous()) {
      pg.broadcast(t, root);
    } else {
      Tensor c = t.contiguous();
      pg.broadcast(c, root);
      Tensor dst = t;
      dst.copy_(c);
    }
  };
  if (all_flat) {
    pg.broadcast(m.flat().data, root);
  } else {
    for (const auto& [n, t] : params) bcast(t);
  }
  for (const auto& [n, t] : m.named_buffers()) bcast(t);
}

// ---- gradients -------------------------------------------------------------------

struct DDPOptions {
  int64_t bucket_bytes = kDefaultBucketBytes;
  // Start each bucket's all-reduce from backward, as soon as its gradients
  // are final. Off: everything is reduced in synchronize().
  bool overlap = true;
};

// Averages a flat model's gradients over the ranks of a process group,
// overlapped with backward (see the top of this file). Per step, on every
// rank:
//
//   model.zero_grad();
//   loss.backward();        // buckets start all-reducing as their gradients finish
//   ddp.synchronize();      // wait, divide by the world size
//   clip_grad_norm(...); opt.step();
//
// Construct it on every rank at the same point (it checks that the layouts
// match, a collective). Exactly one backward per synchronize(): for gradient
// accumulation, run the micro-batches before the last one under no_sync().
// Not copyable or movable: the parameters' hooks point at it; they are
// removed when it is destroyed.
class DistributedDataParallel {
 public:
  DistributedDataParallel(nn::Module& model, ProcessGroup& pg, DDPOptions opts = {})
      : model_(model), pg_(pg), opts_(opts) {
    const char* op = "DistributedDataParallel";
    NQ_CHECK(opts_.bucket_bytes > 0, op, "bucket_bytes must be positive, got ", opts_.bucket_bytes);
    if (pg_.world_size() == 1) return;
    const nn::FlatParameters& f = detail::flat_of(model_, op);
    detail::check_same_on_all_ranks(pg_, detail::layout_fingerprint(model_), op,
                                    "the model layout (parameter and buffer names, shapes, dtypes)");
    grad_ = f.grad;
    for (auto& r : detail::make_buckets(f, opts_.bucket_bytes, op)) {
      Bucket b;
      b.begin = r.begin, b.end = r.end, b.size = int(r.slots.size()), b.pending = b.size;
      buckets_.push_back(std::move(b));
      for (size_t s : r.slots) hooked_.push_back({s, buckets_.size() - 1, f.slots[s].name, f.slots[s].param});
    }
    ready_.assign(f.slots.size(), 0);
    if (!opts_.overlap) return;
    try {
      for (auto& h : hooked_) {
        AutogradMeta& meta = h.param.meta();
        NQ_CHECK(
            !meta.grad_ready_hook, op, "parameter '", h.name,
            "' already has a grad-ready hook (is another DistributedDataParallel attached to this model?)");
        meta.grad_ready_hook = [this, slot = h.slot, bucket = h.bucket] { on_grad_ready(slot, bucket); };
        h.installed = true;
      }
    } catch (...) {
      remove_hooks();
      throw;
    }
  }
  ~DistributedDataParallel() { remove_hooks(); }
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // After backward: starts the buckets backward did not, waits for every
  // all-reduce and divides by the world size, leaving the average in the flat
  // gradient buffer on every rank. A no-op on one process.
  void synchronize() {
    const char* op = "DistributedDataParallel.synchronize";
    if (pg_.world_size() == 1 || buckets_.empty()) return;
    const nn::FlatParameters& f = detail::flat_of(model_, op);
    NQ_CHECK(f.grad.defined() && f.grad.storage() == grad_.storage(), op,
             "the model was flattened again after this DistributedDataParallel was built; build a new one");
    detail::check_flat_grads(f, op);
    started_in_backward_ = int64_t(next_);
    while (next_ < buckets_.size()) launch(next_++);
    for (auto& b : buckets_) {
      b.work->wait();
      b.work.reset();
      detail::divide_range(grad_, b.begin, b.end, pg_.world_size());
      b.pending = b.size;
    }
    std::fill(ready_.begin(), ready_.end(), char(0));
    next_ = polled_ = 0;
  }

  // While alive, backward starts no all-reduce (for the micro-batches of a
  // gradient accumulation step that are not the last).
  class NoSync {
   public:
    explicit NoSync(DistributedDataParallel& d) : d_(d), prev_(d.sync_) { d_.sync_ = false; }
    ~NoSync() { d_.sync_ = prev_; }
    NoSync(const NoSync&) = delete;
    NoSync& operator=(const NoSync&) = delete;

   private:
    DistributedDataParallel& d_;
    bool prev_;
  };
  [[nodiscard]] NoSync no_sync() { return NoSync(*this); }

  ProcessGroup& process_group() const { return pg_; }
  const DDPOptions& options() const { return opts_; }
  int64_t num_buckets() const { return int64_t(buckets_.size()); }
  // Gradient-buffer element range [begin, end) of bucket i.
  std::pair<int64_t, int64_t> bucket_range(int64_t i) const {
    NQ_CHECK(i >= 0 && i < num_buckets(), "DistributedDataParallel", "bucket ", i, " out of range (",
             num_buckets(), " buckets)");
    return {buckets_[size_t(i)].begin, buckets_[size_t(i)].end};
  }
  // How many buckets the last backward started before synchronize() was
  // called: the all-reduces that overlapped with backward.
  int64_t buckets_started_in_backward() const { return started_in_backward_; }

 private:
  struct Bucket {
    int64_t begin = 0, end = 0;
    int size = 0, pending = 0;  // parameters in all / whose gradient is not final yet
    std::unique_ptr<Work> work;
  };
  struct Hooked {
    size_t slot = 0, bucket = 0;
    std::string name;
    Tensor param;
    bool installed = false;
  };

  void on_grad_ready(size_t slot, size_t bucket) {
    if (!sync_) return;
    NQ_CHECK(!ready_[slot], "DistributedDataParallel", "the gradient of '", model_.flat().slots[slot].name,
             "' was completed twice without synchronize() in between: call synchronize() after every "
             "backward, and run gradient-accumulation micro-batches but the last under no_sync()");
    ready_[slot] = 1;
    if (--buckets_[bucket].pending == 0)
      while (next_ < buckets_.size() && buckets_[next_].pending == 0) launch(next_++);
    // Drive the transfers already started (MPI progresses inside its calls).
    while (polled_ < next_ && buckets_[polled_].work->test()) ++polled_;
  }
  void launch(size_t i) {
    Bucket& b = buckets_[i];
    b.work = pg_.all_reduce_sum_async(grad_.narrow(0, b.begin, b.end - b.begin));
  }
  void remove_hooks() {
    for (auto& h : hooked_)
      if (h.installed) {
        h.param.meta().grad_ready_hook = nullptr;
        h.installed = false;
      }
  }

  nn::Module& model_;
  ProcessGroup& pg_;
  DDPOptions opts_;
  Tensor grad_;  // the model's flat gradient buffer
  std::vector<Bucket> buckets_;
  std::vector<Hooked> hooked_;
  std::vector<char> ready_;  // per slot: gradient final in this pass
  size_t next_ = 0;          // next bucket to start
  size_t polled_ = 0;        // buckets before this one are known complete
  bool sync_ = true;
  int64_t started_in_backward_ = 0;
};

// Averages the model's gradients over the ranks after backward, without
// hooks: all buckets are started at once, then each is waited for and
// divided while the later ones are still in flight. Same result as
// DistributedDataParallel::synchronize(). A no-op on one process.
inline void all_reduce_gradients(nn::Module& m, ProcessGroup& pg,
                                 int64_t bucket_bytes = kDefaultBucketBytes) {
  const char* op = "dist.all_reduce_gradients";
  if (pg.world_size() == 1) return;
  const nn::FlatParameters& f = detail::flat_of(m, op);
  detail::check_flat_grads(f, op);
  const auto buckets = detail::make_buckets(f, bucket_bytes, op);
  std::vector<std::unique_ptr<Work>> works;
  for (const auto& b : buckets)
    works.push_back(pg.all_reduce_sum_async(f.grad.narrow(0, b.begin, b.end - b.begin)));
  for (size_t i = 0; i < buckets.size(); ++i) {
    works[i]->wait();
    detail::divide_range(f.grad, buckets[i].begin, buckets[i].end, pg.world_size());
  }
}

// The mean of one value over the ranks (e.g. the loss, for logging).
inline double all_reduce_mean(ProcessGroup& pg, double value) {
  if (pg.world_size() == 1) return value;
  return pg.all_reduce_sum(value) / pg.world_size();
}

// ---- checkpoints -------------------------------------------------------------------

// Rank 0 writes checkpoints; the others hold identical state.
inline bool is_checkpoint_rank(const ProcessGroup& pg) { return pg.rank() == 0; }

// Runs write() on rank 0 only. Every rank then waits until rank 0 is done (an
// all-reduce of its outcome: a barrier that also tells the others whether it
// worked), so no rank reads or replaces the file early. If write() threw, it
// is rethrown on rank 0 and every other rank throws an nq::Error carrying its
// message, so no rank is left waiting in a later collective.
template <typename F>
void on_checkpoint_rank(ProcessGroup& pg, F&& write) {
  std::exception_ptr err;
  std::string msg;
  if (is_checkpoint_rank(pg)) {
    try {
      write();
    } catch (const std::exception& e) {
      err = std::current_exception();
      msg = e.what();
    } catch (...) {
      err = std::current_exception();
      msg = "unknown exception";
    }
  }
  const double failed = pg.all_reduce_sum(err ? 1.0 : 0.0);
  if (failed == 0) return;
  int64_t len = pg.broadcast_value(int64_t(msg.size()), 0);
  msg.resize(size_t(len));
  pg.broadcast(msg.data(), len, 0);
  if (err) std::rethrow_exception(err);
  fail("dist.on_checkpoint_rank", "rank 0 failed to write the checkpoint: ", msg);
}

// io::save_checkpoint on rank 0 only (see on_checkpoint_rank). Every rank
// holds the same model and optimizer state, so rank 0's file is the run's.
inline void save_checkpoint(ProcessGroup& pg, const std::string& path, const nn::Module& model,
                            const optim::Optimizer* opt, const optim::LRScheduler* sched,
                            const io::TrainState& state, const std::string& config_json = "") {
  on_checkpoint_rank(pg, [&] { io::save_checkpoint(path, model, opt, sched, state, config_json); });
}

}  // namespace nq::dist
