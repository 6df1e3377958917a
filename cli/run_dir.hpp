#pragma once
// A run directory: what `nextquill pretrain` and `nextquill train` write and
// what --base / --run read. It is a Hugging Face model directory
// (config.json + model.safetensors, loadable by transformers) with the
// tokenizer beside it (encoder.json, vocab.bpe, special_tokens.json) and
// nextquill.json holding what made it (kind, command, prompt template,
// method, base run, LoRA, training statistics).
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nextquill/nextquill.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

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

// Makes `dir` and checks that it is writable, with a clear message. The
// probe's name is a temporary file's (*.tmp.<pid>), so a run killed right here
// leaves nothing that remove_stale_temps() would not clean up.
inline void make_out_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) nq::fail("output", "cannot create directory '", dir, "': ", ec.message());
  const fs::path probe = fs::path(dir) / (".nq-write-test.tmp." + std::to_string(::getpid()));
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  if (!f) nq::fail("output", "directory '", dir, "' is not writable");
  std::fclose(f);
  fs::remove(probe, ec);
}

// Removes the temporary files (<name>.tmp.<pid>, see io/atomic_file.hpp) that a
// killed process left in `dir`; files of a process that is still alive stay.
inline void remove_stale_temps(const std::string& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || at + 5 == name.size()) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const pid_t pid = pid_t(std::stol(digits));
    if (pid == ::getpid() || (::kill(pid, 0) == -1 && errno == ESRCH)) fs::remove(e.path(), ec);
  }
}

// The --out directory of a command that writes a run: inputs are validated
// first, then create() makes it. If the command then fails (an exception
// leaves the scope) without leaving a checkpoint to resume from, what it
// created goes again: the directories it made, or, in a directory that was
// there before, the entries that were not, so a failed command leaves nothing
// partial behind. (Files it overwrote stay overwritten.)
class OutDir {
 public:
  explicit OutDir(std::string dir) : dir_(std::move(dir)), exceptions_(std::uncaught_exceptions()) {
    std::error_code ec;
    // The topmost directory that create_directories will make, if any.
    for (fs::path p = fs::absolute(dir_, ec); !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
      made_ = p;
      if (p == p.parent_path()) break;
    }
    if (made_.empty() && fs::is_directory(dir_, ec))
      for (const auto& e : fs::directory_iterator(dir_)) before_.push_back(e.path().filename().string());
  }
  OutDir(const OutDir&) = delete;
  OutDir& operator=(const OutDir&) = delete;
  void create() {
    make_out_dir(dir_);
    remove_stale_temps(dir_);
  }
  ~OutDir() {
    if (std::uncaught_exceptions() <= exceptions_) return;  // success
    try {  // best effort: the exception on its way out says what went wrong
      std::error_code ec;
      if (fs::exists(fs::path(dir_) / "checkpoint.safetensors", ec)) return;  // resumable: keep it all
      if (!made_.empty()) {
        fs::remove_all(made_, ec);
        return;
      }
      std::vector<fs::path> created;
      for (const auto& e : fs::directory_iterator(dir_, ec))
        if (std::find(before_.begin(), before_.end(), e.path().filename().string()) == before_.end())
          created.push_back(e.path());
      for (const auto& p : created) fs::remove_all(p, ec);
    } catch (...) {
    }
  }

 private:
  std::string dir_;
  fs::path made_;                    // what create() makes; empty: dir_ existed
  std::vector<std::string> before_;  // dir_'s entries before this command
  int exceptions_;
};

// On resume, drops the loss-log lines written after the checkpoint's step (a
// run killed between checkpoints logged steps it will now redo, the last one
// possibly cut in the middle), so the log of an interrupted and resumed run
// equals an uninterrupted run's. Lines 1..step must all be there.
inline void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) nq::fail("run", path, ": missing; it is needed to resume from the checkpoint at step ", step);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  size_t pos = text.find('\n'), kept = pos == std::string::npos ? 0 : pos + 1;  // the header
  int64_t expect = 1;
  while (pos != std::string::npos && expect <= step) {
    const size_t next = text.find('\n', pos + 1);
    if (next == std::string::npos) break;  // a last line without its newline: cut by a kill
    const std::string line = text.substr(pos + 1, next - pos - 1);
    const size_t tab = line.find('\t');
    if (tab == std::string::npos || line.substr(0, tab) != std::to_string(expect)) break;
    kept = next + 1, pos = next, ++expect;
  }
  if (kept == 0 || expect <= step)
    nq::fail("run", path, ": holds ", expect - 1, " step(s) but the checkpoint is at step ", step,
             " (the log was truncated or edited; it cannot be continued exactly)");
  if (kept < text.size()) nq::io::write_file_atomic(path, "run", std::string_view(text).substr(0, kept));
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
