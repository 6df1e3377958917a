#pragma once
// Crash-safe file replacement: write <path>.tmp.<pid>, then rename it over
// <path>, so a reader (or a run killed mid-write) sees the old file or the new
// one, never half of one. Every writer of checkpoints, tokenizer files and
// configs goes through here. (Atomic on POSIX; not fsync'ed.)
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>

#include "../core/error.hpp"

#ifdef _WIN32
#include <process.h>
#else
#include <unistd.h>
#endif

namespace nq::io {

// `write(out)` fills the temporary file; errors name `op` and both paths.
inline void write_file_atomic(const std::string& path, const char* op,
                              const std::function<void(std::ostream&)>& write) {
#ifdef _WIN32
  const std::string tmp = path + ".tmp." + std::to_string(_getpid());
#else
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
#endif
  auto drop_tmp = [&] {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
  };
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(op, path, ": cannot open '", tmp, "' for writing");
    try {
      write(out);
    } catch (...) {
      out.close();
      drop_tmp();
      throw;
    }
    out.flush();
    if (!out) {
      out.close();
      drop_tmp();
      fail(op, path, ": write to '", tmp, "' failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    drop_tmp();
    fail(op, path, ": cannot rename '", tmp, "': ", ec.message());
  }
}

inline void write_file_atomic(const std::string& path, const char* op, std::string_view data) {
  write_file_atomic(path, op,
                    [&](std::ostream& out) { out.write(data.data(), std::streamsize(data.size())); });
}

}  // namespace nq::io
