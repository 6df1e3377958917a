#pragma once
// What `nextquill pretrain` needs, as one struct, so `nextquill study` can
// pretrain a base model in-process.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "numerics.hpp"

namespace nqcli {

struct PretrainArgs {
  std::string data, out, config_file, init;
  int64_t steps = -1, stop_after = -1;  // steps -1: the config's
  uint64_t seed = 1;
  int threads = 1;
  bool resume = false;
  nlohmann::json overrides;  // settings applied after config_file (null: none)
  NanPolicy nan;
};

// Trains the tokenizer and the base model and writes the run; throws nq::Error on bad input.
void run_pretrain(const PretrainArgs& a, const std::string& command);

}  // namespace nqcli
