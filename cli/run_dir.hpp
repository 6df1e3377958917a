#pragma once
// A run directory: what `nextquill pretrain` and `nextquill train` write and
// what --base / --run read. It is a Hugging Face model directory
// (config.json + model.safetensors, loadable by transformers) with the
// tokenizer beside it (encoder.json, vocab.bpe, special_tokens.json) and
// nextquill.json holding what made it (kind, command, prompt template,
// method, base run, LoRA, training statistics).
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nextquill/nextquill.hpp>
#include <nlohmann/json.hpp>
#include <string>

namespace nqcli {

namespace fs = std::filesystem;

struct Run {
  std::string dir;
  std::shared_ptr<nq::CausalLM> model;
  nq::data::BPETokenizer tok;
  nlohmann::json meta;  // nextquill.json (empty object for a plain HF directory)
};

inline nlohmann::json read_json(const std::string& path) { return nq::io::detail::read_json_file(path); }

// Where the tokenizer of a model directory is: our own layout, or a GPT-2
// style HF layout (vocab.json + merges.txt).
inline nq::data::BPETokenizer load_tokenizer(const std::string& dir) {
  if (fs::exists(fs::path(dir) / "encoder.json")) return nq::data::BPETokenizer::load(dir);
  if (fs::exists(fs::path(dir) / "vocab.json") && fs::exists(fs::path(dir) / "merges.txt")) {
    auto t = nq::data::BPETokenizer::load_gpt2(dir + "/vocab.json", dir + "/merges.txt");
    return t;
  }
  nq::fail("run", dir,
           ": no tokenizer found (expected encoder.json + vocab.bpe as written by nextquill, or a GPT-2 "
           "byte-level BPE as vocab.json + merges.txt; tokenizer.json-only models are not supported)");
}

inline Run load_run(const std::string& dir) {
  if (!fs::is_directory(dir)) nq::fail("run", "'", dir, "' is not a directory");
  if (!fs::exists(fs::path(dir) / "config.json"))
    nq::fail("run", dir,
             ": no config.json (is this a run written by nextquill pretrain/train, or a "
             "Hugging Face model directory?)");
  Run r;
  r.dir = dir;
  r.model = nq::io::load_hf(dir);
  r.tok = load_tokenizer(dir);
  const fs::path meta = fs::path(dir) / "nextquill.json";
  r.meta = fs::exists(meta) ? read_json(meta.string()) : nlohmann::json::object();
  NQ_CHECK(r.tok.vocab_size() <= r.model->config().vocab_size, "run", dir, ": the tokenizer has ",
           r.tok.vocab_size(), " tokens but the model only ", r.model->config().vocab_size);
  if (!r.tok.has_eos()) nq::fail("run", dir, ": the tokenizer has no EOS token");
  return r;
}

// Model + tokenizer + nextquill.json, each written atomically.
inline void save_run(const std::string& dir, const nq::CausalLM& model, const nq::data::BPETokenizer& tok,
                     const nlohmann::json& meta, const std::string& dtype = "F32") {
  fs::create_directories(dir);
  nq::io::save_hf(model, dir, dtype);
  tok.save(dir);
  nq::io::write_file_atomic(dir + "/nextquill.json", "run", meta.dump(2) + "\n");
}

// Makes `dir` and checks that it is writable, with a clear message.
inline void make_out_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) nq::fail("output", "cannot create directory '", dir, "': ", ec.message());
  const fs::path probe = fs::path(dir) / ".nq-write-test";
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) nq::fail("output", "directory '", dir, "' is not writable");
  std::fclose(f);
  fs::remove(probe, ec);
}

// On resume, drops the loss-log lines written after the checkpoint's step (a
// run killed between checkpoints logged steps it will now redo), so the log
// of an interrupted and resumed run equals an uninterrupted run's.
inline void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      header = false;
      kept += line + "\n";
      continue;
    }
    char* end = nullptr;
    const long long s = std::strtoll(line.c_str(), &end, 10);
    if (end == line.c_str() || s > step) break;
    kept += line + "\n";
  }
  in.close();
  nq::io::write_file_atomic(path, "run", kept);
}

inline std::string command_line(int argc, char** argv) {
  std::string s = "nextquill";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a(argv[i]);
    bool quote = a.empty();
    for (char c : a) quote = quote || c == ' ' || c == '\t' || c == '\'' || c == '"' || c == '$';
    s.push_back(' ');
    if (quote) s.push_back('\'');
    s.append(a);
    if (quote) s.push_back('\'');
  }
  return s;
}

inline std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char b[32];
  std::strftime(b, sizeof b, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return b;
}

struct Stopwatch {
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
};

}  // namespace nqcli
