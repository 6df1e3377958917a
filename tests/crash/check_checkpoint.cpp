// nq_check_checkpoint FILE: exit 0 when FILE is a complete, readable training
// checkpoint (format tag, checksum over every tensor, a model that rebuilds
// from its stored config and loads with every tensor's shape right, a step,
// and for a `train` checkpoint a parseable loader position), else print why and
// exit 1. kill_resume.sh runs it on whatever a SIGKILL left behind.
#include <cstdio>
#include <exception>
#include <nextquill/nextquill.hpp>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: nq_check_checkpoint CHECKPOINT\n");
    return 2;
  }
  const std::string path = argv[1];
  try {
    auto model = nq::io::load_model_from_checkpoint(path);
    const nq::io::TrainState st = nq::io::load_checkpoint(path, *model, nullptr, nullptr);
    NQ_CHECK(st.step >= 1, "check_checkpoint", path, ": step ", st.step, " (a checkpoint follows a step)");
    if (auto it = st.extra.find("loader"); it != st.extra.end())
      (void)nq::data::LoaderPosition::parse(it->second);
    std::printf("%s: valid checkpoint at step %lld\n", path.c_str(), static_cast<long long>(st.step));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: INVALID: %s\n", path.c_str(), e.what());
    return 1;
  }
}
