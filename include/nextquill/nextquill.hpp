#pragma once
// nextquill: the single entry header.
//
//   #include <nextquill/nextquill.hpp>
//   nq::Tensor w = nq::randn({3, 2}).requires_grad_();
//   nq::Tensor loss = nq::matmul(x, w).square().mean();
//   loss.backward();
#include "autograd/engine.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "config.hpp"
#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/generator.hpp"
#include "core/print.hpp"
#include "core/shape.hpp"
#include "core/storage.hpp"
#include "core/tensor.hpp"
#include "ops/api.hpp"
#include "ops/attention.hpp"
#include "ops/data.hpp"
#include "ops/dropout.hpp"
#include "ops/elementwise.hpp"
#include "ops/embedding.hpp"
#include "ops/factory.hpp"
#include "ops/join.hpp"
#include "ops/loss.hpp"
#include "ops/matmul.hpp"
#include "ops/norm.hpp"
#include "ops/reduce.hpp"
#include "ops/rope.hpp"
#include "ops/softmax.hpp"
#include "ops/view.hpp"
#include "version.hpp"
// Layers and models.
#include "models/causal_lm.hpp"
#include "models/config.hpp"
#include "io/hf.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_io.hpp"
#include "nn/nn.hpp"
