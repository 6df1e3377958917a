#pragma once
// All nn modules.
#include "attention.hpp"
#include "block.hpp"
#include "embedding.hpp"
#include "init.hpp"
#include "linear.hpp"
#include "lora.hpp"
#include "mlp.hpp"
#include "module.hpp"
#include "norm.hpp"
