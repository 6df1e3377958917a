#pragma once
// Data-parallel training: the ProcessGroup interface (with the single-process
// LocalProcessGroup) and the DDP helpers. The MPI backend is separate
// (nextquill/dist/mpi.hpp), because it needs MPI to compile.
#include "ddp.hpp"
#include "process_group.hpp"
