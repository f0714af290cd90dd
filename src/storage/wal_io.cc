#include "storage/wal_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

namespace synod::storage {

int WalIo::PwriteAll(int fd, const iovec* iov, int iovcnt, off_t offset, size_t* written_bytes) {
  std::vector<iovec> rest(iov, iov + iovcnt);
  size_t first = 0;
  *written_bytes = 0;
  while (first < rest.size()) {
    const int count = static_cast<int>(std::min<size_t>(rest.size() - first, IOV_MAX));
    const ssize_t n = ::pwritev(fd, rest.data() + first, count, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // pwritev made no progress on a regular file: never expected
    *written_bytes += static_cast<size_t>(n);
    offset += n;
    // Drop the fully written iovecs and advance into the partially written one.
    for (size_t left = static_cast<size_t>(n); left > 0;) {
      const size_t take = std::min(left, rest[first].iov_len);
      rest[first].iov_base = static_cast<char*>(rest[first].iov_base) + take;
      rest[first].iov_len -= take;
      left -= take;
      if (rest[first].iov_len == 0) ++first;
    }
    while (first < rest.size() && rest[first].iov_len == 0) ++first;
  }
  return 0;
}

int WalIo::Fdatasync(int fd) { return ::fdatasync(fd) == 0 ? 0 : errno; }

int WalIo::Fsync(int fd) { return ::fsync(fd) == 0 ? 0 : errno; }

int WalIo::Allocate(int fd, off_t length) {
  // posix_fallocate returns the error instead of setting errno. It falls back to writing
  // zeros on file systems without fallocate, which is slow but correct.
  return ::posix_fallocate(fd, 0, length);
}

int WalIo::Truncate(int fd, off_t length) { return ::ftruncate(fd, length) == 0 ? 0 : errno; }

WalIo& WalIo::Default() {
  static WalIo io;
  return io;
}

std::string IoErrorMessage(const std::string& what, const std::string& path, int err) {
  return "wal: " + what + " " + path + ": " + std::strerror(err);
}

}  // namespace synod::storage
