// WalIo: the system calls through which the WAL changes files. The default implementation
// makes the real calls; a test subclasses it to inject faults (for example to send writes
// past a byte budget to /dev/full, so that the failure the WAL sees is a real ENOSPC from a
// real write). Every method returns 0 or an errno value, never throws.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <string>

namespace synod::storage {

class WalIo {
 public:
  virtual ~WalIo() = default;

  // Writes all of `iov` at `offset`, retrying short writes and EINTR. On error returns the
  // errno and sets `*written_bytes` to what did reach the file.
  virtual int PwriteAll(int fd, const iovec* iov, int iovcnt, off_t offset, size_t* written_bytes);
  virtual int Fdatasync(int fd);
  virtual int Fsync(int fd);
  // Reserves [0, length) so that later writes there cannot fail for lack of space.
  virtual int Allocate(int fd, off_t length);
  virtual int Truncate(int fd, off_t length);

  // The shared instance making real calls.
  static WalIo& Default();
};

// Formats "what path: strerror(err)" for an error Status.
std::string IoErrorMessage(const std::string& what, const std::string& path, int err);

}  // namespace synod::storage
