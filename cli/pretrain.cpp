// nextquill pretrain: a BPE tokenizer and a base causal LM trained on a text
// corpus (DIR/pretrain.jsonl, else the train split's texts), with atomic
// checkpoints every --ckpt-every steps and exact resume (--resume).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "args.hpp"
#include "commands.hpp"
#include "numerics.hpp"
#include "pretrainer.hpp"
#include "run_dir.hpp"

namespace nqcli {

namespace {

// Everything that defines a pretraining run; written to RUN/pretrain_config.json.
struct PretrainConfig {
  // model
  std::string arch = "llama";  // "llama" (RoPE, RMSNorm, SwiGLU) or "gpt2"
  int64_t d_model = 384, n_layers = 6, n_heads = 6, n_kv_heads = 6, d_ff = 1024, seq_len = 256;
  bool tie_embeddings = true;
  // tokenizer
  int64_t num_merges = 8000;
  // optimization
  int64_t steps = 6000, batch_size = 16, warmup = 200;
  double lr = 1e-3, min_lr_ratio = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, grad_clip = 1.0;
  // bookkeeping
  int64_t ckpt_every = 100, eval_every = 250, eval_batches = 8;
  double valid_fraction = 0.005;
  std::string export_dtype = "BF16";

  nlohmann::json to_json() const {
    return {{"arch", arch},
            {"d_model", d_model},
            {"n_layers", n_layers},
            {"n_heads", n_heads},
            {"n_kv_heads", n_kv_heads},
            {"d_ff", d_ff},
            {"seq_len", seq_len},
            {"tie_embeddings", tie_embeddings},
            {"num_merges", num_merges},
            {"steps", steps},
            {"batch_size", batch_size},
            {"warmup", warmup},
            {"lr", lr},
            {"min_lr_ratio", min_lr_ratio},
            {"weight_decay", weight_decay},
            {"beta1", beta1},
            {"beta2", beta2},
            {"grad_clip", grad_clip},
            {"ckpt_every", ckpt_every},
            {"eval_every", eval_every},
            {"eval_batches", eval_batches},
            {"valid_fraction", valid_fraction},
            {"export_dtype", export_dtype}};
  }
  // Keys of to_json(), any subset; unknown keys and wrong types are errors naming the file.
  void update(const nlohmann::json& j, const std::string& where) {
    NQ_CHECK(j.is_object(), "pretrain config", where, ": expected a JSON object");
    const nlohmann::json known = to_json();
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!known.contains(it.key())) {
        std::string keys;
        for (auto k = known.begin(); k != known.end(); ++k) keys += (keys.empty() ? "" : ", ") + k.key();
        nq::fail("pretrain config", where, ": unknown key '", it.key(), "' (known: ", keys, ")");
      }
      const nlohmann::json& d = known.at(it.key());
      const bool ok = d.is_string()           ? it->is_string()
                      : d.is_boolean()        ? it->is_boolean()
                      : d.is_number_integer() ? it->is_number_integer()
                                              : it->is_number();
      NQ_CHECK(ok, "pretrain config", where, ": key '", it.key(), "' must be a ", d.type_name(), ", got ",
               it->dump());
    }
    auto get = [&](const char* k, auto& dst) {
      if (j.contains(k)) dst = j.at(k).get<std::decay_t<decltype(dst)>>();
    };
    get("arch", arch), get("d_model", d_model), get("n_layers", n_layers), get("n_heads", n_heads);
    get("n_kv_heads", n_kv_heads), get("d_ff", d_ff), get("seq_len", seq_len);
    get("tie_embeddings", tie_embeddings), get("num_merges", num_merges), get("steps", steps);
    get("batch_size", batch_size), get("warmup", warmup), get("lr", lr), get("min_lr_ratio", min_lr_ratio);
    get("weight_decay", weight_decay), get("beta1", beta1), get("beta2", beta2), get("grad_clip", grad_clip);
    get("ckpt_every", ckpt_every), get("eval_every", eval_every), get("eval_batches", eval_batches);
    get("valid_fraction", valid_fraction), get("export_dtype", export_dtype);
  }
  void validate(const std::string& where) const {
    auto pos = [&](int64_t v, const char* k) {
      NQ_CHECK(v > 0, "pretrain config", where, ": '", k, "' must be > 0, got ", v);
    };
    NQ_CHECK(arch == "llama" || arch == "gpt2", "pretrain config", where,
             ": 'arch' must be llama or gpt2, got '", arch, "'");
    pos(d_model, "d_model"), pos(n_layers, "n_layers"), pos(n_heads, "n_heads"), pos(seq_len, "seq_len");
    pos(batch_size, "batch_size"), pos(ckpt_every, "ckpt_every"), pos(eval_every, "eval_every");
    pos(eval_batches, "eval_batches"), pos(n_kv_heads, "n_kv_heads");
    NQ_CHECK(steps >= 0, "pretrain config", where, ": 'steps' must be >= 0, got ", steps);
    NQ_CHECK(num_merges >= 0, "pretrain config", where, ": 'num_merges' must be >= 0");
    NQ_CHECK(d_ff >= 0, "pretrain config", where, ": 'd_ff' must be >= 0 (0: the default), got ", d_ff);
    NQ_CHECK(warmup >= 0, "pretrain config", where, ": 'warmup' must be >= 0, got ", warmup);
    // Sizes of one batch: bounded so that an absurd value is refused here, not by the allocator.
    NQ_CHECK(batch_size <= (1 << 20) && seq_len <= (1 << 20), "pretrain config", where,
             ": 'batch_size' and 'seq_len' must be at most 2^20, got ", batch_size, " and ", seq_len);
    NQ_CHECK(d_model % n_heads == 0, "pretrain config", where, ": d_model ", d_model,
             " is not divisible by n_heads ", n_heads);
    NQ_CHECK(n_heads % n_kv_heads == 0, "pretrain config", where, ": n_heads ", n_heads,
             " is not a multiple of n_kv_heads ", n_kv_heads);
    NQ_CHECK(std::isfinite(lr) && lr > 0, "pretrain config", where, ": 'lr' must be > 0");
    NQ_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "pretrain config", where,
             ": 'min_lr_ratio' must be in [0, 1]");
    NQ_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "pretrain config", where,
             ": 'weight_decay' must be >= 0");
    NQ_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "pretrain config", where,
             ": 'beta1' and 'beta2' must be in [0, 1)");
    NQ_CHECK(std::isfinite(grad_clip) && grad_clip > 0, "pretrain config", where,
             ": 'grad_clip' must be > 0");
    NQ_CHECK(valid_fraction > 0 && valid_fraction < 0.5, "pretrain config", where,
             ": 'valid_fraction' must be in (0, 0.5)");
    NQ_CHECK(export_dtype == "F32" || export_dtype == "BF16" || export_dtype == "F16", "pretrain config",
             where, ": 'export_dtype' must be F32, BF16 or F16");
  }
  nq::CausalLMConfig model_config(int64_t vocab, const std::string& where) const {
    nq::CausalLMConfig c =
        arch == "gpt2" ? nq::CausalLMConfig::gpt2(vocab, seq_len, d_model, n_layers, n_heads)
                       : nq::CausalLMConfig::llama(vocab, seq_len, d_model, n_layers, n_heads, n_kv_heads);
    c.d_ff = d_ff;
    c.tie_embeddings = tie_embeddings;
    try {
      c.validate();
    } catch (const nq::Error& e) {
      nq::fail("pretrain config", where, ": ", e.what());
    }
    return c;
  }
};

// The corpus: DIR/pretrain.jsonl, else every distinct text of DIR/train.jsonl
// minus those that contain a valid or test target. Queries and history items of
// the train split can quote another user's later speech (in shakespeare, 112 of
// 538 test targets are quoted so), and a base model pretrained on them would
// have seen the answers; pretrain.jsonl files are expected to be filtered alike.
std::vector<std::string> load_corpus(const std::string& dir, std::string& source) {
  if (!fs::is_directory(dir)) nq::fail("pretrain", "--data '", dir, "' is not a directory");
  const fs::path pre = fs::path(dir) / "pretrain.jsonl";
  if (fs::exists(pre)) {
    source = pre.string();
    return nq::data::load_text_jsonl(pre.string());
  }
  const fs::path train = fs::path(dir) / "train.jsonl";
  if (!fs::exists(train)) nq::fail("pretrain", dir, ": neither pretrain.jsonl nor train.jsonl is there");
  std::vector<std::string> held_out;  // evaluation targets that must not be pretrained on
  for (const char* split : {"valid.jsonl", "test.jsonl"}) {
    const fs::path p = fs::path(dir) / split;
    if (!fs::exists(p)) continue;
    for (const auto& ex : nq::data::load_jsonl(p.string()))
      if (!ex.target.empty()) held_out.push_back(ex.target);
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  size_t dropped = 0;
  auto add = [&](const std::string& t) {
    if (t.empty() || !seen.insert(t).second) return;
    for (const auto& target : held_out)
      if (t.find(target) != std::string::npos) {
        ++dropped;
        return;
      }
    out.push_back(t);
  };
  for (const auto& ex : nq::data::load_jsonl(train.string())) {
    for (const auto& h : ex.history) add(h);
    add(ex.query);
    add(ex.target);
  }
  source = train.string() + " (targets, history items and queries; no pretrain.jsonl; dropped " +
           std::to_string(dropped) + " text(s) that contain a valid or test target)";
  return out;
}

}  // namespace

void run_pretrain(const PretrainArgs& a, const std::string& command) {
  const std::string &data = a.data, &out = a.out, &init = a.init;
  // A dataset may ship its own defaults (DIR/pretrain_config.json), like its prompt.json.
  std::string config_file = a.config_file;
  if (config_file.empty() && fs::exists(fs::path(data) / "pretrain_config.json")) {
    config_file = (fs::path(data) / "pretrain_config.json").string();
    std::printf("settings: %s (the dataset's defaults)\n", config_file.c_str());
  }
  const int64_t steps = a.steps, stop_after = a.stop_after;
  const uint64_t seed = a.seed;
  const int threads = a.threads;
  const bool resume = a.resume;
  const nlohmann::json& overrides = a.overrides;
  nq::set_num_threads(threads);

  // Every input is read and checked before --out is touched (OutDir below).
  PretrainConfig cfg;
  if (!config_file.empty()) cfg.update(read_json(config_file), config_file);
  if (!overrides.is_null()) cfg.update(overrides, "settings");
  if (steps >= 0) cfg.steps = steps;
  const std::string cfg_where = config_file.empty() ? "defaults" : config_file;
  cfg.validate(cfg_where);

  const std::string ckpt = out + "/checkpoint.safetensors";
  if (!resume && fs::exists(ckpt))
    nq::fail("pretrain", out,
             " already holds a pretraining checkpoint; pass --resume to continue it or choose "
             "another --out");
  if (resume && !fs::exists(ckpt)) nq::fail("pretrain", "--resume: no checkpoint at '", ckpt, "'");

  // Tokenizer: trained on the corpus, or the --init model's, or (on resume) the run's.
  std::string source;
  const std::vector<std::string> texts = load_corpus(data, source);
  size_t bytes = 0;
  for (const auto& t : texts) bytes += t.size();
  std::printf("corpus: %s: %zu texts, %.1f MB\n", source.c_str(), texts.size(), double(bytes) / 1e6);
  NQ_CHECK(!texts.empty(), "pretrain", source, ": no texts to pretrain on");

  nq::data::BPETokenizer tok;
  std::shared_ptr<nq::CausalLM> model;
  if (resume) {
    tok = nq::data::BPETokenizer::load(out);
  } else if (!init.empty()) {
    tok = load_tokenizer(init);
  } else {
    Stopwatch sw;
    nq::data::BPETrainerOptions to;
    to.num_merges = size_t(cfg.num_merges);
    to.special_tokens = {"<|endoftext|>"};
    tok = nq::data::train_bpe(texts, to);
    tok.set_eos_token("<|endoftext|>");
    std::printf("tokenizer: %zu merges, vocabulary %d, trained in %.1f s\n", tok.num_merges(),
                tok.vocab_size(), sw.seconds());
  }
  if (!tok.has_eos()) nq::fail("pretrain", "the tokenizer has no EOS token");

  // Hold out the last valid_fraction of the texts for a validation loss.
  const size_t n_valid = std::max<size_t>(1, size_t(double(texts.size()) * cfg.valid_fraction));
  NQ_CHECK(texts.size() > n_valid, "pretrain", source, ": too few texts (", texts.size(), ") to hold out ",
           n_valid, " for validation");
  Stopwatch enc;
  const auto train = nq::data::TokenStream::encode(
      tok, std::vector<std::string>(texts.begin(), texts.end() - int64_t(n_valid)));
  const auto valid = nq::data::TokenStream::encode(
      tok, std::vector<std::string>(texts.end() - int64_t(n_valid), texts.end()));
  std::printf("tokens: %lld train, %lld valid (%.2f bytes/token), encoded in %.1f s\n",
              static_cast<long long>(train.size()), static_cast<long long>(valid.size()),
              double(bytes) / double(train.size() + valid.size()), enc.seconds());

  nq::CausalLMConfig mc;
  if (!init.empty()) {
    model = nq::io::load_hf(init);
    mc = model->config();
    NQ_CHECK(tok.vocab_size() <= mc.vocab_size, "pretrain", init, ": tokenizer has ", tok.vocab_size(),
             " tokens, the model ", mc.vocab_size);
    cfg.seq_len = std::min(cfg.seq_len, mc.max_seq_len);
  } else if (resume) {
    model = nq::io::load_model_from_checkpoint(ckpt);
    mc = model->config();
    NQ_CHECK(tok.vocab_size() <= mc.vocab_size, "pretrain", ckpt, ": the model has ", mc.vocab_size,
             " tokens, the tokenizer in ", out, " ", tok.vocab_size());
  } else {
    mc = cfg.model_config(tok.vocab_size(), cfg_where);
    model = std::make_shared<nq::CausalLM>(mc, seed);
  }
  const int64_t T = cfg.seq_len, B = cfg.batch_size;
  // A small corpus gets shorter validation windows rather than an error.
  const int64_t Tv = std::min(T, valid.size() - 1);
  NQ_CHECK(Tv >= 1, "pretrain", "the validation texts hold ", valid.size(),
           " tokens; use a larger valid_fraction");
  NQ_CHECK(train.size() > T + 1, "pretrain", "the corpus holds ", train.size(),
           " tokens, fewer than one window");

  nq::optim::AdamWOptions ao;
  ao.lr = cfg.lr, ao.beta1 = cfg.beta1, ao.beta2 = cfg.beta2;
  nq::optim::AdamW opt(nq::optim::make_param_groups(model->named_parameters(), cfg.weight_decay), ao);
  const int64_t total = std::max<int64_t>(cfg.steps, 1);
  nq::optim::LRScheduler sched(
      opt, nq::optim::Warmup(nq::optim::CosineLR(total, cfg.min_lr_ratio), std::min(cfg.warmup, total - 1)));
  nq::Generator data_rng(seed * 7919 + 17);
  NanGuard guard("pretrain", a.nan, model->named_parameters());
  int64_t step = 0, ckpt_step = 0;
  if (resume) {
    auto st = nq::io::load_checkpoint(ckpt, *model, &opt, &sched);
    data_rng.set_state(st.rng_state);
    step = ckpt_step = st.step;
    if (auto n = st.extra.find("nan_skipped"); n != st.extra.end())
      guard.set_skipped(std::strtoll(n->second.c_str(), nullptr, 10));
    auto it = st.extra.find("pretrain_config");
    if (it != st.extra.end() && it->second != cfg.to_json().dump())
      std::fprintf(
          stderr,
          "warning: the pretraining settings differ from the checkpoint's (%s); continuing with the new "
          "ones\n",
          it->second.c_str());
    std::printf("resumed from %s at step %lld\n", ckpt.c_str(), static_cast<long long>(step));
  }

  // From here on the run writes; a failure that leaves no checkpoint removes
  // what it wrote.
  OutDir out_dir(out);
  out_dir.create();
  if (!resume) {
    // A finished run's marker goes first, so that a killed rerun never looks
    // finished (nextquill.json is written last).
    fs::remove(out + "/nextquill.json");
    tok.save(out);
  }
  nq::io::write_file_atomic(out + "/pretrain_config.json", "pretrain", cfg.to_json().dump(2) + "\n");
  std::printf(
      "model: %s, %lld parameters (d %lld, %lld layers, %lld heads, vocab %lld, context %lld); %lld "
      "steps of %lld x %lld tokens; %d thread(s)\n",
      mc.arch.c_str(), static_cast<long long>(model->num_parameters()), static_cast<long long>(mc.d_model),
      static_cast<long long>(mc.n_layers), static_cast<long long>(mc.n_heads),
      static_cast<long long>(mc.vocab_size), static_cast<long long>(mc.max_seq_len),
      static_cast<long long>(cfg.steps), static_cast<long long>(B), static_cast<long long>(T), threads);

  const int64_t V = mc.vocab_size;
  auto lm_loss = [&](const nq::Tensor& d) {  // d: (B, L+1) windows
    const int64_t L = d.size(1) - 1;
    nq::Tensor logits = model->forward(d.narrow(1, 0, L));
    return nq::cross_entropy(logits.reshape({-1, V}), d.narrow(1, 1, L).contiguous().reshape({-1}));
  };
  auto val_loss = [&] {
    nq::NoGradGuard ng;
    double s = 0;
    for (int64_t i = 0; i < cfg.eval_batches; ++i) s += lm_loss(valid.window(i, B, Tv + 1)).item();
    return s / double(cfg.eval_batches);
  };
  auto save_ckpt = [&] {
    nq::io::TrainState st;
    st.step = step;
    st.rng_state = data_rng.state();
    st.extra["pretrain_config"] = cfg.to_json().dump();
    st.extra["nan_skipped"] = std::to_string(guard.skipped());
    nq::io::save_checkpoint(ckpt, *model, &opt, &sched, st, mc.to_json().dump());
    ckpt_step = step;
  };

  const std::string log_path = out + "/losses.tsv";
  if (resume) truncate_log(log_path, step);
  std::ofstream log(log_path, resume ? std::ios::app : std::ios::trunc);
  if (!resume) log << "step\tloss\tlr\tgrad_norm\tval_loss\n";
  auto flush_log = [&] {
    log.flush();
    if (!log) nq::fail("pretrain", log_path, ": write failed (disk full?)");
  };
  Stopwatch sw;
  nq::ProgressBar bar(cfg.steps, "pretrain", step);
  double ema = -1, last_val = -1;
  while (step < cfg.steps) {
    nq::Tensor batch = train.sample_windows(B, T + 1, data_rng);
    model->zero_grad();
    nq::Tensor loss = lm_loss(batch);
    loss.backward();
    double l = loss.item();
    guard.inject(step + 1, l);
    const double norm = nq::optim::clip_grad_norm(opt.parameters(), cfg.grad_clip);
    const bool skip = guard.bad_step(step + 1, l, norm, ckpt_step > 0 ? ckpt : "", ckpt_step);
    const double lr = opt.lr();
    if (!skip) opt.step();
    sched.step();
    ++step;
    if (!skip) ema = ema < 0 ? l : 0.95 * ema + 0.05 * l;
    const bool eval_now = step % cfg.eval_every == 0 || step == cfg.steps;
    if (eval_now) last_val = val_loss();
    log << step << '\t' << l << '\t' << lr << '\t' << norm << '\t';
    if (eval_now) log << last_val;
    log << '\n';
    if (step % cfg.ckpt_every == 0 || step == cfg.steps || step == stop_after) {
      flush_log();
      save_ckpt();
    }
    char f[96];
    if (last_val >= 0)
      std::snprintf(f, sizeof f, "loss %.3f val %.3f lr %.2g", ema, last_val, lr);
    else
      std::snprintf(f, sizeof f, "loss %.3f lr %.2g", ema, lr);
    bar.update(step, f, double(B * T), "tok");
    if (step == stop_after) {
      bar.finish("stopped at step " + std::to_string(step) + " (checkpoint " + ckpt +
                 "); rerun with --resume");
      return;
    }
  }
  bar.finish();
  flush_log();
  log.close();
  const double vl = val_loss();
  nlohmann::json meta = {{"kind", "base"},
                         {"command", command},
                         {"finished", now_utc()},
                         {"corpus", source},
                         {"corpus_texts", texts.size()},
                         {"train_tokens", train.size()},
                         {"steps", step},
                         {"tokens_seen", step * B * T},
                         {"valid_loss", vl},
                         {"valid_ppl", std::exp(vl)},
                         {"parameters", model->num_parameters()},
                         {"seed", seed},
                         {"threads", threads},
                         {"nan_skipped_steps", guard.skipped()},
                         {"pretrain_config", cfg.to_json()},
                         {"seconds_this_session", sw.seconds()}};
  save_run(out, *model, tok, meta, cfg.export_dtype);
  std::printf("validation loss %.4f (perplexity %.2f per token); base model written to %s\n", vl,
              std::exp(vl), out.c_str());
}

int cmd_pretrain(int argc, char** argv) {
  PretrainArgs a;
  a.threads = default_threads();
  auto &data = a.data, &out = a.out, &config_file = a.config_file, &init = a.init;
  auto &steps = a.steps, &stop_after = a.stop_after;
  auto& seed = a.seed;
  auto& threads = a.threads;
  auto& resume = a.resume;
  ArgParser p("nextquill pretrain",
              "Trains a byte-level BPE tokenizer and a base causal language model on DIR/pretrain.jsonl\n"
              "({\"text\": ...} per line), or on the texts of DIR/train.jsonl when there is no\n"
              "pretrain.jsonl. RUN gets the model (Hugging Face layout: config.json + model.safetensors),\n"
              "the tokenizer, pretrain_config.json, losses.tsv and checkpoint.safetensors (every\n"
              "ckpt_every steps; --resume continues exactly where a stopped run left off).");
  p.add("--data", &data, "DIR", "dataset directory").required();
  p.add("--out", &out, "RUN", "output run directory").required();
  p.add("--config", &config_file, "FILE",
        "JSON overriding pretraining settings (default: DIR/pretrain_config.json if present; docs/cli.md)");
  p.add("--steps", &steps, "N", "optimizer steps (overrides the config; default 6000)");
  p.add("--seed", &seed, "S", "seed for initialisation and data sampling");
  p.add("--threads", &threads, "N", "CPU threads");
  p.add("--init", &init, "HF_DIR",
        "start from a Hugging Face GPT-2/Llama/Qwen2 directory (and its tokenizer)");
  p.flag("--resume", &resume, "continue from RUN/checkpoint.safetensors");
  p.add("--stop-after", &stop_after, "N", "checkpoint and stop at step N (as if interrupted)");
  add_nan_flags(p, a.nan);
  if (!p.parse(argc, argv, 2)) return 0;
  require(threads >= 1 && threads <= 4096, p.prog(), "--threads must be in 1..4096");
  require(!p.seen("--steps") || steps >= 0, p.prog(), "--steps must be >= 0");
  require(!p.seen("--stop-after") || stop_after >= 1, p.prog(), "--stop-after must be >= 1");
  a.nan.check(p.prog());
  run_pretrain(a, command_line(argc, argv));
  return 0;
}

}  // namespace nqcli
