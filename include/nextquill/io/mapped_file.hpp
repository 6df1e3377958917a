#pragma once
// A read-only view of a whole file: mmap on POSIX (the pages are read on
// first touch, so opening a 100 MB model costs nothing until its tensors are
// used), a plain read elsewhere.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#define NQ_HAVE_MMAP 1
#else
#include <fstream>
#define NQ_HAVE_MMAP 0
#endif

namespace nq::io {

class MappedFile {
 public:
  // `op` labels errors ("gguf", ...).
  MappedFile(const std::string& path, const char* op) {
#if NQ_HAVE_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(op, "cannot open '", path, "': ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(op, "'", path, "' is not a regular file");
    }
    size_ = uint64_t(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_t(size_), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        fail(op, "cannot map '", path, "': ", std::strerror(e));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);
#else
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) fail(op, "cannot open '", path, "'");
    copy_.resize(size_t(in.tellg()));
    in.seekg(0);
    in.read(reinterpret_cast<char*>(copy_.data()), std::streamsize(copy_.size()));
    if (!in) fail(op, "cannot read '", path, "'");
    data_ = copy_.data();
    size_ = copy_.size();
#endif
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
#if NQ_HAVE_MMAP
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_t(size_));
#endif
  }

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
#if !NQ_HAVE_MMAP
  std::vector<uint8_t> copy_;
#endif
};

}  // namespace nq::io
