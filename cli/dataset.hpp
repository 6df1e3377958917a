#pragma once
// Dataset plumbing shared by train, eval, inspect and study: the prompt
// template a dataset directory asks for, deterministic subsets, and a
// split's examples encoded for both passes.
#include <algorithm>
#include <filesystem>
#include <nextquill/nextquill.hpp>
#include <numeric>
#include <string>
#include <vector>

namespace nqcli {

// "auto": DIR/prompt.json when present (a PromptTemplate JSON, see
// docs/cli.md), else the task-neutral "generic" template. Or a preset name
// (gitcommits, generic, shakespeare), or a path to a JSON file.
inline nq::data::PromptTemplate resolve_template(const std::string& spec, const std::string& data_dir) {
  namespace fs = std::filesystem;
  if (spec == "auto") {
    const fs::path p = fs::path(data_dir) / "prompt.json";
    return fs::exists(p) ? nq::data::PromptTemplate::load(p.string()) : nq::data::PromptTemplate::generic();
  }
  if (spec == "gitcommits") return nq::data::PromptTemplate::gitcommits();
  if (spec == "generic") return nq::data::PromptTemplate::generic();
  if (spec == "shakespeare") return nq::data::PromptTemplate::shakespeare();
  if (fs::exists(spec)) return nq::data::PromptTemplate::load(spec);
  nq::fail("template", "'", spec,
           "' is neither auto, a preset (gitcommits, generic, shakespeare) nor a file");
}

// Examples skip .. skip+n-1 of a fixed shuffle (seed independent of the run's
// seed, so every method of a study sees the same subset; skip > 0 gives a
// disjoint one, e.g. for an estimator that never saw the examples it scores);
// n <= 0: all from skip on.
inline std::vector<nq::data::Example> subset(std::vector<nq::data::Example> ex, int64_t n, int64_t skip = 0) {
  const int64_t size = int64_t(ex.size());
  if (skip <= 0 && (n <= 0 || n >= size)) return ex;
  NQ_CHECK(skip < size, "dataset", "--skip-examples ", skip, " leaves nothing of ", size, " examples");
  nq::Generator g(20260101);
  std::vector<size_t> idx(ex.size());
  std::iota(idx.begin(), idx.end(), size_t{0});
  for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[size_t(g.next_u64() % i)]);
  idx.erase(idx.begin(), idx.begin() + skip);
  if (n > 0 && n < int64_t(idx.size())) idx.resize(size_t(n));
  std::sort(idx.begin(), idx.end());  // keep file order
  std::vector<nq::data::Example> out;
  out.reserve(idx.size());
  for (size_t i : idx) out.push_back(std::move(ex[i]));
  return out;
}

inline std::vector<nq::data::Example> load_split(const std::string& dir, const std::string& split,
                                                 int64_t max_examples, int64_t skip = 0) {
  NQ_CHECK(split == "train" || split == "valid" || split == "test", "dataset", "unknown split '", split,
           "' (train, valid or test)");
  if (!std::filesystem::is_directory(dir)) nq::fail("dataset", "--data '", dir, "' is not a directory");
  const std::string path = (std::filesystem::path(dir) / (split + ".jsonl")).string();
  if (!std::filesystem::exists(path)) nq::fail("dataset", dir, ": no ", split, ".jsonl");
  return subset(nq::data::load_jsonl(path), max_examples, skip);
}

}  // namespace nqcli
