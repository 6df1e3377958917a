// The nextquill CLI end to end on a tiny synthetic dataset
// (tests/fixtures/cli, made by tools/make_cli_fixture.py): pretrain, train,
// eval --json, a quick study that pretrains its own base, inspect, --help on
// every subcommand, and bad flags. Seconds, not minutes: the models are tiny.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nextquill/nextquill.hpp>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "test_util.hpp"

#ifdef NQ_CLI_PATH

namespace {

namespace fs = std::filesystem;

struct Cmd {
  int code = -1;
  std::string out;  // stdout + stderr
};

Cmd run_cli(const std::string& args, const fs::path& dir) {
  const fs::path log = dir / "cmd.log";
  const std::string cmd = std::string(NQ_CLI_PATH) + " " + args + " > '" + log.string() + "' 2>&1";
  const int st = std::system(cmd.c_str());
  Cmd c;
  c.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  c.out = ss.str();
  return c;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE_MESSAGE(in.good(), "missing ", p.string());
  return nlohmann::json::parse(in);
}

void check_metrics(const nlohmann::json& j, int64_t n) {
  for (const char* k : {"rouge1", "rougeL", "meteor"}) {
    REQUIRE_MESSAGE(j.contains(k), k);
    CHECK(j[k].get<double>() >= 0.0);
    CHECK(j[k].get<double>() <= 1.0);
  }
  CHECK(j["bleu"].get<double>() >= 0.0);
  CHECK(j["bleu"].get<double>() <= 100.0);
  const double ppl = j["ppl"].get<double>();
  CHECK(std::isfinite(ppl));
  CHECK(ppl > 1.0);
  CHECK(j["n"].get<int64_t>() == n);
}

}  // namespace

TEST_CASE("cli: pretrain, train, eval --json, study --quick, inspect on a tiny dataset") {
  const fs::path tmp = fs::temp_directory_path() / ("nq_cli_test_" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  const std::string data = std::string(NQ_TEST_DATA_DIR) + "/cli";
  {
    std::ofstream cfg(tmp / "tiny.json");
    cfg << R"({"d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2, "d_ff": 64, "seq_len": 128,
              "num_merges": 150, "batch_size": 4, "eval_batches": 1, "valid_fraction": 0.1, "warmup": 2})";
  }
  const std::string base = (tmp / "base").string();
  Cmd c = run_cli("pretrain --data " + data + " --out " + base + " --config " + (tmp / "tiny.json").string() +
                      " --steps 6 --threads 1",
                  tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  {  // No pretrain.jsonl: the train texts minus those that quote a valid or test target.
    std::vector<std::string> targets;
    for (const char* split : {"/valid.jsonl", "/test.jsonl"})
      for (const auto& ex : nq::data::load_jsonl(data + split)) targets.push_back(ex.target);
    std::set<std::string> texts;
    for (const auto& ex : nq::data::load_jsonl(data + "/train.jsonl")) {
      texts.insert(ex.history.begin(), ex.history.end());
      texts.insert(ex.query);
      texts.insert(ex.target);
    }
    size_t leaking = 0;
    for (const auto& t : texts)
      for (const auto& g : targets)
        if (t.find(g) != std::string::npos) {
          ++leaking;
          break;
        }
    REQUIRE(leaking > 0);  // the fixture has one, so the filter is exercised
    CHECK(c.out.find("dropped " + std::to_string(leaking) + " text(s) that contain a valid or test target") !=
          std::string::npos);
  }
  for (const char* f : {"config.json", "model.safetensors", "encoder.json", "vocab.bpe", "nextquill.json"})
    CHECK_MESSAGE(fs::exists(fs::path(base) / f), f);
  CHECK(read_json(fs::path(base) / "nextquill.json")["steps"] == 6);

  const std::string run = (tmp / "nq").string();
  c = run_cli("train --data " + data + " --base " + base + " --out " + run +
                  " --method nextquill --epochs 1 --batch-size 8 --threads 1",
              tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(read_json(fs::path(run) / "nextquill.json")["method"] == "nextquill");
  CHECK_FALSE(fs::exists(fs::path(run) / "checkpoint.safetensors"));  // removed once finished

  // Stopped (as if killed) after step 2 and resumed: the same loss log and weights as uninterrupted.
  const std::string rs = (tmp / "resumed").string();
  const std::string train_args =
      "train --data " + data + " --base " + base +
      " --method nextquill --epochs 1 --batch-size 8 --threads 1 --ckpt-every 1 --out ";
  c = run_cli(train_args + rs + " --stop-after 2", tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(fs::exists(fs::path(rs) / "checkpoint.safetensors"));
  {  // a line logged after the checkpoint, as a run killed between checkpoints leaves behind
    std::ofstream lg(fs::path(rs) / "losses.tsv", std::ios::app);
    lg << "3\t0\t9.99\n";
  }
  c = run_cli(train_args + rs + " --resume", tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  auto slurp = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  CHECK(slurp(fs::path(rs) / "losses.tsv") == slurp(fs::path(run) / "losses.tsv"));
  CHECK(slurp(fs::path(rs) / "model.safetensors") == slurp(fs::path(run) / "model.safetensors"));

  c = run_cli("eval --run " + run + " --data " + data + " --split test --json --threads 1 --max-new-tokens 8",
              tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  // stdout holds exactly one JSON object (progress goes nowhere with --json).
  const nlohmann::json ev = nlohmann::json::parse(c.out);
  check_metrics(ev, 6);
  CHECK(fs::exists(fs::path(run) / "predictions-test.jsonl"));

  // A fixed estimator: the first run computes its DCE values and saves them next
  // to the estimator's weights; a second run loads them and trains bit for bit alike.
  {
    const std::string fx = "train --data " + data + " --base " + base + " --estimator fixed:" + run +
                           " --method nextquill --epochs 1 --batch-size 8 --threads 1 --out ";
    c = run_cli(fx + (tmp / "fx1").string(), tmp);
    INFO(c.out);
    REQUIRE(c.code == 0);
    CHECK(fs::exists(fs::path(run) / "estimator-cache.bin"));
    c = run_cli(fx + (tmp / "fx2").string(), tmp);
    INFO(c.out);
    REQUIRE(c.code == 0);
    CHECK(c.out.find("examples' DCE loaded from") != std::string::npos);
    CHECK(slurp(tmp / "fx1" / "losses.tsv") == slurp(tmp / "fx2" / "losses.tsv"));
    CHECK(slurp(tmp / "fx1" / "model.safetensors") == slurp(tmp / "fx2" / "model.safetensors"));
    // With another thread count the file is not used (its values could differ in the last bit).
    c = run_cli("train --data " + data + " --base " + base + " --estimator fixed:" + run +
                    " --method nextquill --epochs 1 --batch-size 8 --threads 2 --out " +
                    (tmp / "fx3").string(),
                tmp);
    INFO(c.out);
    REQUIRE(c.code == 0);
    CHECK(c.out.find("made by other weights or threads") != std::string::npos);
    // The older public code's Jensen-Shannon weights, from the same cached estimator.
    c = run_cli(fx + (tmp / "fx4").string() + " --weight-rule js", tmp);
    INFO(c.out);
    REQUIRE(c.code == 0);
    CHECK(read_json(tmp / "fx4" / "nextquill.json")["method_options"]["rule"] == "js");
    CHECK(read_json(tmp / "fx1" / "nextquill.json")["method_options"]["rule"] == "threshold");
    CHECK(slurp(tmp / "fx4" / "losses.tsv") != slurp(tmp / "fx1" / "losses.tsv"));
  }

  // A study on a dataset it has never seen and without pretrain.jsonl: it pretrains its own base.
  const std::string study = (tmp / "study").string();
  const auto run_study = [&](const std::string& extra) {
    return run_cli("study --data " + data + " --out " + study +
                       " --quick --pretrain-steps 3 --methods sft,context-sft,nextquill --max-new-tokens 8 "
                       "--threads 1" +
                       extra,
                   tmp);
  };
  c = run_study("");
  INFO(c.out);
  REQUIRE(c.code == 0);
  const nlohmann::json res = read_json(fs::path(study) / "results.json");
  for (const char* m : {"sft", "context-sft", "nextquill"}) {
    REQUIRE_MESSAGE(res["methods"].contains(m), m);
    for (const char* k : {"rouge1", "rougeL", "bleu", "meteor", "ppl"}) {
      CHECK(res["methods"][m][k].contains("mean"));
      CHECK(res["methods"][m][k].contains("std"));
    }
    CHECK(res["methods"][m]["rougeL"]["mean"].get<double>() >= 0.0);
    CHECK(res["methods"][m]["rougeL"]["mean"].get<double>() <= 1.0);
  }
  CHECK(res["baselines"]["latest"]["rougeL"].get<double>() > 0.0);  // history items share words with targets
  const double p = res["significance"]["nextquill vs context-sft"]["rougeL"]["p_value"].get<double>();
  CHECK(p > 0.0);
  CHECK(p <= 1.0);
  CHECK(res["ablation"].size() == 3);
  CHECK(fs::exists(fs::path(study) / "results.md"));
  CHECK(fs::exists(fs::path(study) / "report.html"));
  CHECK(c.out.find("results:") != std::string::npos);

  // Rerunning a finished study reuses its runs.
  c = run_study("");
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(c.out.find("finished earlier") != std::string::npos);

  // A trained run whose evaluation was removed is evaluated again, not retrained
  // (rescoring a study with other decoding settings).
  fs::remove(fs::path(study) / "runs" / "nextquill-s1" / "eval-test.json");
  fs::remove(fs::path(study) / "runs" / "nextquill-s1" / "predictions-test.jsonl");
  const std::string model_before = slurp(fs::path(study) / "runs" / "nextquill-s1" / "model.safetensors");
  c = run_study(" --min-new-tokens 4");
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(c.out.find("trained earlier: evaluating only") != std::string::npos);
  CHECK(slurp(fs::path(study) / "runs" / "nextquill-s1" / "model.safetensors") == model_before);
  CHECK(fs::exists(fs::path(study) / "runs" / "nextquill-s1" / "eval-test.json"));
  CHECK(read_json(fs::path(study) / "results.json")["settings"]["min_new_tokens"].get<int>() == 4);

  // Pruned runs (results kept, weights deleted to save disk) still aggregate;
  // the token-level report is then skipped with a message, not a failure.
  for (const char* m : {"sft", "context-sft", "nextquill"})
    fs::remove(fs::path(study) / "runs" / (std::string(m) + "-s1") / "model.safetensors");
  c = run_study(" --min-new-tokens 4");
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(c.out.find("no token-level report") != std::string::npos);
  const nlohmann::json pruned = read_json(fs::path(study) / "results.json");
  CHECK(pruned["report"].is_null());
  CHECK(pruned["methods"]["nextquill"]["rougeL"]["mean"].get<double>() ==
        read_json(fs::path(study) / "runs" / "nextquill-s1" / "eval-test.json")["rougeL"].get<double>());

  // compare: a paired bootstrap between two runs' per-example scores.
  const std::string ra = (fs::path(study) / "runs" / "nextquill-s1").string(),
                    rb = (fs::path(study) / "runs" / "context-sft-s1").string();
  c = run_cli("compare --a " + ra + " --b " + rb + " --json", tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  const nlohmann::json cmp = nlohmann::json::parse(c.out);
  const double ra_l = read_json(fs::path(ra) / "eval-test.json")["rougeL"].get<double>(),
               rb_l = read_json(fs::path(rb) / "eval-test.json")["rougeL"].get<double>();
  CHECK(cmp["rougeL"]["a"].get<double>() == doctest::Approx(ra_l).epsilon(1e-9));
  CHECK(cmp["rougeL"]["diff"].get<double>() == doctest::Approx(ra_l - rb_l).epsilon(1e-9));
  for (const char* k : {"rouge1", "rougeL"}) {
    CHECK(cmp[k]["p_value"].get<double>() > 0.0);
    CHECK(cmp[k]["p_value"].get<double>() <= 1.0);
    CHECK(cmp[k]["ci95"][0].get<double>() <= cmp[k]["ci95"][1].get<double>());
  }
  c = run_cli("compare --a " + ra + " --b " + ra, tmp);  // a run against itself: no difference
  INFO(c.out);
  REQUIRE(c.code == 0);
  CHECK(c.out.find("+0.0000") != std::string::npos);
  {  // A different set of examples is refused, naming both sizes.
    std::ifstream in(fs::path(ra) / "predictions-test.jsonl");
    std::string first;
    std::getline(in, first);
    std::ofstream(tmp / "one.jsonl") << first << "\n";
  }
  c = run_cli("compare --a " + (tmp / "one.jsonl").string() + " --b " + rb, tmp);
  CHECK(c.code == 1);
  CHECK(c.out.find("not the same evaluation set") != std::string::npos);

  c = run_cli("inspect --run " + run + " --data " + data + " --html " + (tmp / "page" / "p.html").string() +
                  " --users 3 --threads 1",
              tmp);
  INFO(c.out);
  REQUIRE(c.code == 0);
  std::ifstream page(tmp / "page" / "p.html");
  std::stringstream ps;
  ps << page.rdbuf();
  CHECK(ps.str().find("<svg") != std::string::npos);
  CHECK(ps.str().find("user") != std::string::npos);
  CHECK(fs::exists(tmp / "page" / "p-dce.svg"));
  CHECK(c.out.find("cross-entropy of the run (with history)") != std::string::npos);

  fs::remove_all(tmp);
}

TEST_CASE("cli: --help on every subcommand, and clear errors for bad flags") {
  const fs::path tmp = fs::temp_directory_path() / ("nq_cli_help_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  for (const char* sub : {"pretrain", "train", "eval", "study", "inspect", "compare"}) {
    Cmd c = run_cli(std::string(sub) + " --help", tmp);
    CHECK_MESSAGE(c.code == 0, sub);
    CHECK_MESSAGE(c.out.find("usage: nextquill " + std::string(sub)) != std::string::npos, sub);
  }
  Cmd c = run_cli("--help", tmp);
  CHECK(c.code == 0);
  CHECK(c.out.find("study") != std::string::npos);

  // Bad input: (arguments, exit code, text the message must contain). Usage
  // errors exit 2; a well-formed command that fails on its input exits 1.
  struct BadCase {
    std::string args;
    int code;
    std::string message;
  };
  const std::vector<BadCase> bad = {
      {"frobnicate", 2, "unknown command 'frobnicate'"},
      {"train --data x --base y --out z --method bogus", 2, "unknown method 'bogus'"},
      {"train --data x --base y --out z --epochs two", 2, "--epochs: expected an integer, got 'two'"},
      {"eval --run x --data y --spilt test", 2, "did you mean --split?"},
      {"eval --data y", 2, "missing required option --run"},
      {"train --data x --base y --out z --weight-rule jsd", 2, "--weight-rule must be 'threshold' or 'js'"},
      {"study --data x --out z --weight-rule jsd", 2, "--weight-rule must be 'threshold' or 'js'"},
      {"compare --a /nonexistent/run --b y", 1,
       "--a /nonexistent/run: no such run directory or predictions file"},
      {"compare --a x", 2, "missing required option --b"},
      {"train --data " + std::string(NQ_TEST_DATA_DIR) + "/cli --base /nonexistent/base --out " +
           (tmp / "o").string(),
       1, "'/nonexistent/base' is not a directory"},
  };
  for (const auto& b : bad) {
    Cmd r = run_cli(b.args, tmp);
    CHECK_MESSAGE(r.code == b.code, b.args);
    CHECK_MESSAGE(r.out.find(b.message) != std::string::npos, b.args, " printed: ", r.out);
  }
  fs::remove_all(tmp);
}

#endif  // NQ_CLI_PATH
