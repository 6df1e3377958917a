#pragma once
// nextquill's optimizers and training helpers (namespace nq::optim):
// Optimizer/ParamGroup/make_param_groups (optimizer.hpp), SGD (sgd.hpp),
// AdamW (adamw.hpp), LR schedules and LRScheduler (schedule.hpp), gradient
// clipping (clip.hpp) and gradient accumulation (accumulate.hpp).
#include "accumulate.hpp"
#include "adamw.hpp"
#include "clip.hpp"
#include "optimizer.hpp"
#include "schedule.hpp"
#include "sgd.hpp"
