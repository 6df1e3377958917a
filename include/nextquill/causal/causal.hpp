#pragma once
// The NextQuill method as modules: options and presets, the two causal
// preference effects, token weights, losses, the paired training objective
// with dynamic or fixed estimators, and the per-token inspector.
#include "effects.hpp"
#include "loss.hpp"
#include "objective.hpp"
#include "options.hpp"
#include "weights.hpp"
