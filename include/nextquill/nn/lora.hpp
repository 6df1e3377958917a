#pragma once
// LoRA (Hu et al., 2021): low-rank adapters on chosen Linear layers.
//
//   apply_lora(model, {.r = 8, .alpha = 16, .targets = {"q_proj", "v_proj"}});
//
// attaches lora_A (r, in) and lora_B (out, r) to every Linear whose name
// matches a target, freezes every other parameter of the model and
// re-flattens it, so the flat gradient buffer holds only the adapters: the
// frozen base weights get no gradient memory, and their Nodes skip the weight
// gradient entirely (autograd/node.hpp: Node::needs). Adapters can be saved
// and loaded alone (one small file per user).
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "../io/tensor_io.hpp"
#include "linear.hpp"

namespace nq::nn {

struct LoRAConfig {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.0;
  // A target matches a Linear whose last name component equals it
  // ("q_proj") or whose full dotted path matches it as a regex
  // ("layers\\.[0-3]\\.attn\\.q_proj").
  std::vector<std::string> targets = {"q_proj", "v_proj"};
  uint64_t seed = 0;
};

inline bool lora_target_matches(const std::string& path, const std::vector<std::string>& targets) {
  const auto dot = path.rfind('.');
  const std::string last = dot == std::string::npos ? path : path.substr(dot + 1);
  for (const auto& t : targets) {
    if (t == last) return true;
    try {
      if (std::regex_match(path, std::regex(t))) return true;
    } catch (const std::regex_error&) {
      fail("LoRA", "target '", t, "' is neither a layer name nor a valid regex");
    }
  }
  return false;
}

// Attaches adapters and freezes the rest; returns the wrapped layers' paths.
// The generator drives adapter init and LoRA dropout, so it must outlive the
// model (the model keeps a pointer for dropout).
inline std::vector<std::string> apply_lora(Module& root, const LoRAConfig& cfg, Generator& gen) {
  NQ_CHECK(cfg.r > 0, "LoRA", "rank r must be positive, got ", cfg.r);
  NQ_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "LoRA", "dropout must be in [0, 1), got ", cfg.dropout);
  root.requires_grad_(false);
  std::vector<std::string> wrapped;
  for (auto& [path, m] : root.named_modules()) {
    auto* lin = dynamic_cast<Linear*>(m);
    if (!lin || path.ends_with("lora_A") || path.ends_with("lora_B") ||
        !lora_target_matches(path, cfg.targets))
      continue;
    lin->attach_lora(cfg.r, cfg.alpha, cfg.dropout, gen);
    wrapped.push_back(path);
  }
  NQ_CHECK(
      !wrapped.empty(), "LoRA", "no Linear layer matches the targets (",
      [&] {
        std::string s;
        for (auto& t : cfg.targets) s += (s.empty() ? "" : ", ") + t;
        return s;
      }(),
      ")");
  root.flatten_parameters();
  return wrapped;
}

// Every Linear with an adapter, by path.
inline std::vector<std::pair<std::string, Linear*>> lora_layers(Module& root) {
  std::vector<std::pair<std::string, Linear*>> out;
  for (auto& [path, m] : root.named_modules())
    if (auto* lin = dynamic_cast<Linear*>(m); lin && lin->has_lora()) out.emplace_back(path, lin);
  return out;
}

inline void merge_lora(Module& root) {
  for (auto& [p, l] : lora_layers(root)) l->merge_lora();
}
inline void unmerge_lora(Module& root) {
  for (auto& [p, l] : lora_layers(root)) l->unmerge_lora();
}

// Adapter tensors only ("<layer>.lora_A.weight", "<layer>.lora_B.weight").
inline NamedTensors lora_state_dict(Module& root) {
  NamedTensors out;
  for (auto& [n, t] : root.named_parameters())
    if (n.find(".lora_A.") != std::string::npos || n.find(".lora_B.") != std::string::npos)
      out.emplace_back(n, t);
  return out;
}

// Writes the adapters alone with their r/alpha/dropout in the metadata.
inline void save_lora(Module& root, const std::string& path, std::map<std::string, std::string> meta = {}) {
  auto layers = lora_layers(root);
  NQ_CHECK(!layers.empty(), "LoRA", "save_lora: the model has no adapters");
  NQ_CHECK(!layers.front().second->lora_merged(), "LoRA", "save_lora: unmerge the adapters first");
  const auto* st = layers.front().second->lora();
  meta["lora_r"] = std::to_string(st->r);
  std::ostringstream a, d;
  a.precision(17), d.precision(17);
  a << st->alpha, d << st->dropout;
  meta["lora_alpha"] = a.str();
  meta["lora_dropout"] = d.str();
  std::string targets;
  for (auto& [p, l] : layers) targets += (targets.empty() ? "" : ",") + p;
  meta["lora_layers"] = targets;
  io::save_tensors(path, lora_state_dict(root), meta);
}

// Loads adapters saved by save_lora into a model that already has adapters
// of the same layout (apply_lora with the same config).
inline std::map<std::string, std::string> load_lora(Module& root, const std::string& path) {
  auto f = io::load_tensors(path);
  std::map<std::string, Tensor> have;
  for (auto& [n, t] : lora_state_dict(root)) have[n] = t;
  NQ_CHECK(!have.empty(), "LoRA", path, ": the model has no adapters; call apply_lora first");
  NoGradGuard ng;
  for (auto& [n, t] : have) {
    auto it = f.tensors.find(n);
    NQ_CHECK(it != f.tensors.end(), "LoRA", path, ": missing adapter tensor '", n, "'");
    NQ_CHECK(it->second.shape() == t.shape(), "LoRA", path, ": adapter '", n, "' has shape ",
             shape_str(it->second.shape()), ", the model expects ", shape_str(t.shape()));
    Tensor dst = t;
    dst.copy_(it->second.to(dst.device()));  // read on the host, copied to the model's device
  }
  for (auto& [n, t] : f.tensors)
    NQ_CHECK(have.count(n), "LoRA", path, ": tensor '", n, "' matches no adapter of the model");
  return f.metadata;
}

}  // namespace nq::nn
