#pragma once
// Training checkpoints: one safetensors file holding everything needed to
// resume bit for bit: model parameters ("model.<name>"), optimizer state
// ("optim.<kind>.<param>"), and in the metadata the model config, optimizer
// and scheduler scalars, the step, the RNG state and the data position.
//
// Written atomically (temp file + rename): a crash leaves the previous
// checkpoint intact. A 64-bit FNV-1a checksum over all tensor bytes is stored
// and verified on load, so a truncated or corrupted file is refused with a
// message naming the file, never loaded half-way.
#include <map>
#include <string>
#include <vector>

#include "../models/causal_lm.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/schedule.hpp"
#include "tensor_io.hpp"

namespace nq::io {

inline constexpr const char* kCheckpointFormat = "nextquill-checkpoint-v1";

// Everything besides tensors that a training loop needs to continue.
struct TrainState {
  int64_t step = 0;                          // optimizer steps done
  std::string rng_state;                     // Generator::state() of the loop's generator
  std::map<std::string, std::string> extra;  // data position, loss so far, ... (free-form)
};

namespace detail {
inline uint64_t fnv1a(const std::map<std::string, RawTensor>& tensors) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  for (const auto& [name, t] : tensors) {  // sorted by name: order-independent of insertion
    mix(reinterpret_cast<const uint8_t*>(name.data()), name.size());
    mix(t.bytes.data(), t.bytes.size());
  }
  return h;
}
inline std::string hex64(uint64_t v) {
  static const char* d = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) s[i] = d[v & 15];
  return s;
}
inline std::string float_dtype_of(const nn::Module& m) {
  auto ps = m.named_parameters();
  return !ps.empty() && ps.front().second.dtype() == kFloat64 ? "F64" : "F32";
}
}  // namespace detail

// Writes model (+ optimizer, scheduler when given) and `state` to `path`.
// Tensors on the GPU are copied to the host first (to_raw).
// `config_json` (e.g. CausalLMConfig::to_json().dump()) is stored so the model
// can be rebuilt from the file alone.
inline void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* opt,
                            const optim::LRScheduler* sched, const TrainState& state,
                            const std::string& config_json = "") {
  SafetensorsFile f;
  const std::string fdt = detail::float_dtype_of(model);
  for (const auto& [n, t] : model.state_dict()) f.tensors["model." + n] = to_raw(t, fdt);
  f.metadata["nq.format"] = kCheckpointFormat;
  if (!config_json.empty()) f.metadata["model.config"] = config_json;
  if (opt) {
    for (const auto& [n, t] : opt->state_tensors()) f.tensors["optim." + n] = to_raw(t, fdt);
    for (const auto& [k, v] : opt->state_meta()) f.metadata["optim." + k] = v;
  }
  if (sched)
    for (const auto& [k, v] : sched->state_meta()) f.metadata["sched." + k] = v;
  f.metadata["train.step"] = std::to_string(state.step);
  f.metadata["train.rng"] = state.rng_state;
  for (const auto& [k, v] : state.extra) f.metadata["extra." + k] = v;
  f.metadata["nq.checksum"] = detail::hex64(detail::fnv1a(f.tensors));
  write_safetensors(path, f);
}

// Reads and verifies a checkpoint file (format tag and checksum).
inline SafetensorsFile read_checkpoint_file(const std::string& path) {
  SafetensorsFile f = read_safetensors(path);
  auto fmt = f.metadata.find("nq.format");
  NQ_CHECK(fmt != f.metadata.end() && fmt->second == kCheckpointFormat, "checkpoint", path,
           ": not a nextquill training checkpoint (metadata 'nq.format' is ",
           fmt == f.metadata.end() ? std::string("missing") : "'" + fmt->second + "'", ")");
  auto sum = f.metadata.find("nq.checksum");
  NQ_CHECK(sum != f.metadata.end(), "checkpoint", path, ": metadata 'nq.checksum' is missing");
  const std::string got = detail::hex64(detail::fnv1a(f.tensors));
  NQ_CHECK(got == sum->second, "checkpoint", path, ": checksum mismatch (file says ", sum->second,
           ", data gives ", got, "): the file is corrupted");
  return f;
}

// Restores model, optimizer and scheduler (when given) from `path` and
// returns the training state. Nothing is modified unless the whole file
// verifies and every model tensor matches by name and shape.
inline TrainState load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt,
                                  optim::LRScheduler* sched) {
  SafetensorsFile f = read_checkpoint_file(path);
  const DType dt = detail::float_dtype_of(model) == "F64" ? kFloat64 : kFloat32;
  // Read on the host; the model copies its tensors across (load_state_dict)
  // and the optimizer state is handed over on the model's device.
  const Device dev = model.device();
  std::map<std::string, Tensor> mstate;
  std::vector<std::pair<std::string, Tensor>> ostate;
  std::map<std::string, std::string> ometa, smeta;
  for (const auto& [name, raw] : f.tensors) {
    if (name.rfind("model.", 0) == 0)
      mstate[name.substr(6)] = from_raw_weights(raw, dt, path + ": '" + name + "'");
    else if (name.rfind("optim.", 0) == 0)
      ostate.emplace_back(name.substr(6), from_raw_weights(raw, dt, path + ": '" + name + "'").to(dev));
    else
      fail("checkpoint", path, ": unexpected tensor '", name, "'");
  }
  for (const auto& [k, v] : f.metadata) {
    if (k.rfind("optim.", 0) == 0) ometa[k.substr(6)] = v;
    if (k.rfind("sched.", 0) == 0) smeta[k.substr(6)] = v;
  }
  for (const auto& [n, t] : model.state_dict()) {
    auto it = mstate.find(n);
    NQ_CHECK(it != mstate.end(), "checkpoint", path, ": model tensor '", n, "' is missing");
    NQ_CHECK(it->second.shape() == t.shape(), "checkpoint", path, ": model tensor '", n, "' has shape ",
             shape_str(it->second.shape()), " in the file but ", shape_str(t.shape()), " in the model");
  }
  try {
    model.load_state_dict(mstate, true);
    if (opt) {
      NQ_CHECK(!ometa.empty(), "checkpoint", path, ": the file holds no optimizer state");
      opt->load_state(ostate, ometa);
    }
    if (sched) sched->load_state(smeta);
  } catch (const Error& e) {
    fail("checkpoint", path, ": ", e.what());
  }
  TrainState st;
  auto get = [&](const char* k) -> std::string {
    auto it = f.metadata.find(k);
    NQ_CHECK(it != f.metadata.end(), "checkpoint", path, ": metadata '", k, "' is missing");
    return it->second;
  };
  try {
    st.step = std::stoll(get("train.step"));
  } catch (const std::exception&) {
    fail("checkpoint", path, ": metadata 'train.step' is not an integer");
  }
  st.rng_state = get("train.rng");
  for (const auto& [k, v] : f.metadata)
    if (k.rfind("extra.", 0) == 0) st.extra[k.substr(6)] = v;
  return st;
}

// Rebuilds a CausalLM from a checkpoint written with its config (for
// evaluation and generation; optimizer state is ignored), on the CPU, then
// moves it to `device`.
inline std::shared_ptr<CausalLM> load_model_from_checkpoint(const std::string& path, DType dtype = kFloat32,
                                                            Device device = Device::cpu()) {
  SafetensorsFile f = read_checkpoint_file(path);
  auto it = f.metadata.find("model.config");
  NQ_CHECK(it != f.metadata.end(), "checkpoint", path, ": metadata 'model.config' is missing");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range (1e999)
    fail("checkpoint", path, ": metadata 'model.config' is not valid JSON: ", e.what());
  }
  auto model = std::make_shared<CausalLM>(CausalLMConfig::from_json(j, path + ": model.config"), 0, dtype);
  std::map<std::string, Tensor> ms;
  for (const auto& [name, raw] : f.tensors)
    if (name.rfind("model.", 0) == 0)
      ms[name.substr(6)] = from_raw_weights(raw, dtype, path + ": '" + name + "'");
  // LoRA adapters in the file are not part of the bare model: skip them.
  std::map<std::string, Tensor> base;
  for (auto& [n, t] : ms)
    if (n.find(".lora_A.") == std::string::npos && n.find(".lora_B.") == std::string::npos) base[n] = t;
  try {
    model->load_state_dict(base, true);
  } catch (const Error& e) {
    fail("checkpoint", path, ": ", e.what());
  }
  if (device != Device::cpu()) model->to(device);
  return model;
}

}  // namespace nq::io
