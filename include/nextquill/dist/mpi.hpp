#pragma once
// MPI backend of ProcessGroup (data-parallel training on CPU processes).
// Needs MPI at compile time: link the CMake target nextquill::mpi (option
// NEXTQUILL_WITH_MPI), which defines NEXTQUILL_WITH_MPI=1 and adds MPI.
//
//   int main(int argc, char** argv) {
//     nq::dist::MPIContext mpi(&argc, &argv);  // MPI_Init_thread ... MPI_Finalize
//     nq::dist::MPIProcessGroup pg;            // a private copy of MPI_COMM_WORLD
//     ...
//   }
//
// Every MPI return code is checked; the group's communicator uses
// MPI_ERRORS_RETURN, so a failed call becomes an nq::Error naming the MPI
// function instead of aborting the job. MPI is only called from the thread
// that runs backward() and the training loop, hence MPI_THREAD_FUNNELED
// (OpenMP threads inside ops never call MPI).
#if !defined(NEXTQUILL_WITH_MPI) || !NEXTQUILL_WITH_MPI
#error \
    "nextquill/dist/mpi.hpp needs MPI: link the CMake target nextquill::mpi (NEXTQUILL_WITH_MPI=ON), or compile with mpicxx -DNEXTQUILL_WITH_MPI=1"
#endif

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "process_group.hpp"

namespace nq::dist {

namespace detail {

inline std::string mpi_error_string(int rc) {
  char buf[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, buf, &len) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(buf, size_t(std::max(len, 0)));
}

// Turns a failed MPI call into nq::Error("nq::<op>: <call> failed: ...").
inline void check_mpi(int rc, const char* op, const char* call) {
  if (rc != MPI_SUCCESS) fail(op, call, " failed: ", mpi_error_string(rc), " (MPI error code ", rc, ")");
}

inline MPI_Datatype mpi_datatype(DType dt) {
  switch (dt) {
    case DType::Float32:
      return MPI_FLOAT;
    case DType::Float64:
      return MPI_DOUBLE;
    case DType::Int64:
      return MPI_INT64_T;
    default:
      break;
  }
  fail("MPIProcessGroup", "dtype ", dtype_name(dt), " is not supported (float32, float64, int64)");
}

// MPI counts are int: larger buffers go in chunks of at most this many elements.
inline constexpr int64_t kMaxMpiCount = INT_MAX;

}  // namespace detail

// RAII MPI initialisation. Initialises MPI (MPI_Init_thread, asking for
// `required`) unless it already is, and finalises it on destruction only if
// it initialised it, so it can sit in main() of a program that may also be
// started by something else that owns MPI. Create it before, and let it
// outlive, every MPIProcessGroup.
class MPIContext {
 public:
  explicit MPIContext(int* argc = nullptr, char*** argv = nullptr, int required = MPI_THREAD_FUNNELED) {
    const char* op = "MPIContext";
    int initialized = 0, finalized = 0;
    detail::check_mpi(MPI_Initialized(&initialized), op, "MPI_Initialized");
    detail::check_mpi(MPI_Finalized(&finalized), op, "MPI_Finalized");
    NQ_CHECK(!finalized, op, "MPI was already finalized and cannot be initialised again");
    if (initialized) {
      detail::check_mpi(MPI_Query_thread(&provided_), op, "MPI_Query_thread");
    } else {
      detail::check_mpi(MPI_Init_thread(argc, argv, required, &provided_), op, "MPI_Init_thread");
      owns_ = true;
    }
    if (provided_ < required) {
      if (owns_) MPI_Finalize();
      fail(op, "MPI provides thread level ", provided_, " but ", required,
           " is needed (nextquill calls MPI from the main thread while OpenMP threads run: "
           "MPI_THREAD_FUNNELED)");
    }
  }
  ~MPIContext() {
    if (!owns_) return;
    int finalized = 0;
    if (MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
  }
  MPIContext(const MPIContext&) = delete;
  MPIContext& operator=(const MPIContext&) = delete;

  // Whether this object initialised MPI (and will finalise it).
  bool owns_mpi() const { return owns_; }
  // The thread support level MPI provides (MPI_THREAD_*).
  int thread_level() const { return provided_; }

 private:
  bool owns_ = false;
  int provided_ = MPI_THREAD_SINGLE;
};

// Requests of one non-blocking collective (several when the buffer needed
// more than one MPI call).
class MPIWork final : public Work {
 public:
  explicit MPIWork(std::vector<MPI_Request> reqs) : reqs_(std::move(reqs)) {}
  ~MPIWork() override {
    // The buffer must not be released while MPI may still write to it.
    if (!done_) MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE);
  }
  MPIWork(const MPIWork&) = delete;
  MPIWork& operator=(const MPIWork&) = delete;

  bool test() override {
    if (done_) return true;
    int flag = 0;
    const int rc = MPI_Testall(int(reqs_.size()), reqs_.data(), &flag, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) done_ = true;  // requests are freed on error; do not wait on them again
    detail::check_mpi(rc, "MPIProcessGroup.all_reduce_sum_async", "MPI_Testall");
    done_ = flag != 0;
    return done_;
  }
  void wait() override {
    if (done_) return;
    const int rc = MPI_Waitall(int(reqs_.size()), reqs_.data(), MPI_STATUSES_IGNORE);
    done_ = true;
    detail::check_mpi(rc, "MPIProcessGroup.all_reduce_sum_async", "MPI_Waitall");
  }

 private:
  std::vector<MPI_Request> reqs_;
  bool done_ = false;
};

// ProcessGroup over an MPI communicator (MPI_COMM_WORLD by default). Works on
// a private duplicate, so its collectives never match someone else's on the
// same communicator and its error handler (MPI_ERRORS_RETURN) is its own.
class MPIProcessGroup final : public ProcessGroup {
 public:
  explicit MPIProcessGroup(MPI_Comm comm = MPI_COMM_WORLD) {
    const char* op = "MPIProcessGroup";
    int initialized = 0;
    detail::check_mpi(MPI_Initialized(&initialized), op, "MPI_Initialized");
    NQ_CHECK(initialized, op, "MPI is not initialised (create an nq::dist::MPIContext first)");
    detail::check_mpi(MPI_Comm_dup(comm, &comm_), op, "MPI_Comm_dup");
    try {
      detail::check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), op, "MPI_Comm_set_errhandler");
      detail::check_mpi(MPI_Comm_rank(comm_, &rank_), op, "MPI_Comm_rank");
      detail::check_mpi(MPI_Comm_size(comm_, &size_), op, "MPI_Comm_size");
    } catch (...) {
      MPI_Comm_free(&comm_);
      throw;
    }
  }
  ~MPIProcessGroup() override {
    int finalized = 0;
    if (comm_ != MPI_COMM_NULL && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized)
      MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  // The duplicated communicator this group runs on.
  MPI_Comm comm() const { return comm_; }

 protected:
  void do_all_reduce_sum(void* data, int64_t n, DType dt) override {
    const MPI_Datatype type = detail::mpi_datatype(dt);
    const size_t esize = element_size(dt);
    for (int64_t off = 0; off < n; off += detail::kMaxMpiCount) {
      const int count = int(std::min(detail::kMaxMpiCount, n - off));
      detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + off * int64_t(esize), count,
                                      type, MPI_SUM, comm_),
                        "MPIProcessGroup.all_reduce_sum", "MPI_Allreduce");
    }
  }
  std::unique_ptr<Work> do_all_reduce_sum_async(void* data, int64_t n, DType dt) override {
    const MPI_Datatype type = detail::mpi_datatype(dt);
    const size_t esize = element_size(dt);
    std::vector<MPI_Request> reqs;
    for (int64_t off = 0; off < n; off += detail::kMaxMpiCount) {
      const int count = int(std::min(detail::kMaxMpiCount, n - off));
      MPI_Request r = MPI_REQUEST_NULL;
      const int rc = MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + off * int64_t(esize), count,
                                    type, MPI_SUM, comm_, &r);
      if (rc != MPI_SUCCESS) {
        // Finish the chunks already started before reporting.
        if (!reqs.empty()) MPI_Waitall(int(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE);
        detail::check_mpi(rc, "MPIProcessGroup.all_reduce_sum_async", "MPI_Iallreduce");
      }
      reqs.push_back(r);
    }
    return std::make_unique<MPIWork>(std::move(reqs));
  }
  void do_broadcast(void* data, int64_t bytes, int root) override {
    for (int64_t off = 0; off < bytes; off += detail::kMaxMpiCount) {
      const int count = int(std::min(detail::kMaxMpiCount, bytes - off));
      detail::check_mpi(MPI_Bcast(static_cast<char*>(data) + off, count, MPI_BYTE, root, comm_),
                        "MPIProcessGroup.broadcast", "MPI_Bcast");
    }
  }
  void do_barrier() override {
    detail::check_mpi(MPI_Barrier(comm_), "MPIProcessGroup.barrier", "MPI_Barrier");
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace nq::dist
