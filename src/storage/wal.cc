#include "storage/wal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "base/assert.h"
#include "base/thread_name.h"
#include "storage/durable_file.h"
#include "storage/wal_format.h"

namespace synod::storage {
namespace {

// Serialises `message` straight into `out` as one record. Fails with kTooLarge when the
// payload exceeds `record_bytes_max`.
Status AppendMessage(RecordType type, const google::protobuf::MessageLite& message,
                     uint64_t record_bytes_max, std::string* out) {
  const size_t payload_bytes = message.ByteSizeLong();
  if (payload_bytes > record_bytes_max) {
    return Status(Code::kTooLarge, "wal: record of " + std::to_string(payload_bytes) +
                                       " bytes exceeds record_bytes_max " +
                                       std::to_string(record_bytes_max));
  }
  const size_t at = out->size();
  out->resize(at + kRecordHeaderBytes + payload_bytes);
  char* record = out->data() + at;
  message.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(record + kRecordHeaderBytes));
  FillRecordHeader(type, payload_bytes, record);
  return Status::Ok();
}

// A caller bug: say what was wrong, then abort.
void AssertFits(const std::string& why) {
  if (why.empty()) return;
  std::fprintf(stderr, "wal: append does not fit the log: %s\n", why.c_str());
  SYNOD_ASSERT(why.empty(), "appends must continue or overwrite the log above the snapshot");
}

// Takes the directory's lock file so that two processes never write one WAL.
Status LockDirectory(const std::string& dir, int* lock_fd) {
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (fd < 0) return Status(Code::kIoError, IoErrorMessage("open", path, errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return Status(Code::kUnavailable, "wal: " + dir + " is in use by another Wal");
    }
    return Status(Code::kIoError, IoErrorMessage("lock", path, err));
  }
  *lock_fd = fd;
  return Status::Ok();
}

// Creates `dir` if it is missing and makes its name durable in the parent directory: without
// that, a power cut could take a new WAL, appends acknowledged as durable and all, with it.
Status CreateDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0) {
    if (errno == EEXIST) return Status::Ok();
    return Status(Code::kIoError, IoErrorMessage("mkdir", dir, errno));
  }
  const size_t slash = dir.find_last_of('/');
  const std::string parent =
      slash == std::string::npos ? "." : dir.substr(0, std::max<size_t>(slash, 1));
  if (Status s = SyncDirectory(parent); !s.ok()) {
    return Status(s.code(), "wal: " + s.message());
  }
  return Status::Ok();
}

}  // namespace

Status Wal::Open(const std::string& dir, WalOptions options, std::unique_ptr<Wal>* wal,
                 WalRecovered* recovered) {
  if (Status s = CreateDirectory(dir); !s.ok()) return s;
  int lock_fd = -1;
  if (Status s = LockDirectory(dir, &lock_fd); !s.ok()) return s;
  RecoveryResult recovery;
  if (Status s = RecoverWal(dir, options.record_bytes_max, &recovery); !s.ok()) {
    ::close(lock_fd);
    return s;
  }
  std::unique_ptr<Wal> opened(new Wal(dir, std::move(options), recovery, lock_fd));
  if (Status s = opened->writer_.Start(recovery); !s.ok()) return s;
  if (recovery.recovered.repaired_tail_bytes > 0) {
    const std::string message = "wal: repaired " + recovery.recovered.repair_note;
    if (opened->options_.log) {
      opened->options_.log(message);
    } else {
      std::fprintf(stderr, "%s\n", message.c_str());
    }
  }
  opened->thread_ = std::thread([w = opened.get()] {
    NameThisThread("synod-wal");
    w->Run();
  });
  *recovered = std::move(recovery.recovered);
  *wal = std::move(opened);
  return Status::Ok();
}

Wal::Wal(const std::string& dir, WalOptions options, const RecoveryResult& recovery, int lock_fd)
    : dir_(dir),
      options_(std::move(options)),
      writer_(dir,
              SegmentWriterOptions{.segment_bytes = options_.segment_bytes,
                                   .preallocate = options_.preallocate},
              options_.io != nullptr ? *options_.io : WalIo::Default()),
      lock_fd_(lock_fd),
      bounds_(recovery.bounds),
      durable_index_(recovery.bounds.last_index()),
      durable_snapshot_index_(recovery.bounds.snapshot_index()) {}

Wal::~Wal() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  ::close(lock_fd_);
}

Status Wal::Encode(const WalWrite& write, WalChunk* chunk) const {
  const uint64_t max = options_.record_bytes_max;
  if (write.snapshot) {
    if (Status s = AppendMessage(RecordType::kSnapshot, *write.snapshot, max, &chunk->bytes);
        !s.ok()) {
      return s;
    }
    ++chunk->records;
  }
  for (size_t i = 0; i < write.entries.size(); ++i) {
    SYNOD_ASSERT(i == 0 || write.entries[i].index() == write.entries[i - 1].index() + 1,
                 "the entries of one append have consecutive indexes");
    if (Status s = AppendMessage(RecordType::kEntry, write.entries[i], max, &chunk->bytes);
        !s.ok()) {
      return s;
    }
    ++chunk->records;
  }
  if (write.hard_state) {
    if (Status s = AppendMessage(RecordType::kHardState, *write.hard_state, max, &chunk->bytes);
        !s.ok()) {
      return s;
    }
    ++chunk->records;
  }
  chunk->max_entry_index = write.entries.empty() ? 0 : write.entries.back().index();
  chunk->hard_state = write.hard_state;
  chunk->snapshot = write.snapshot;
  return Status::Ok();
}

void Wal::CheckAndApply(const WalWrite& write) {
  if (write.snapshot) {
    AssertFits(bounds_.CheckSnapshot(write.snapshot->index()));
    bounds_.ApplySnapshot(write.snapshot->index());
  }
  if (!write.entries.empty()) {
    AssertFits(bounds_.CheckEntry(write.entries.front().index()));
    bounds_.ApplyEntry(write.entries.back().index());
  }
}

namespace {

// Tells each chunk that has a callback how its write ended.
void Tell(const std::vector<WalChunk>& chunks, const Status& status) {
  for (const WalChunk& chunk : chunks) {
    if (chunk.on_durable) chunk.on_durable(status);
  }
}

}  // namespace

Status Wal::Append(const WalWrite& write, WalTicket* ticket) {
  return Enqueue(write, nullptr, ticket);
}

Status Wal::Append(const WalWrite& write, std::function<void(const Status&)> on_durable) {
  WalTicket ticket = 0;
  return Enqueue(write, std::move(on_durable), &ticket);
}

Status Wal::Enqueue(const WalWrite& write, std::function<void(const Status&)> on_durable,
                    WalTicket* ticket) {
  WalChunk chunk;
  if (Status s = Encode(write, &chunk); !s.ok()) return s;  // the costly part, unlocked
  chunk.on_durable = std::move(on_durable);
  std::unique_lock lock(mu_);
  SYNOD_ASSERT(!stopping_, "no Append once the Wal is being destroyed");
  space_cv_.wait(lock, [&] {
    return !failed_.ok() || queue_bytes_ == 0 ||
           queue_bytes_ + chunk.bytes.size() <= options_.queue_bytes_max;
  });
  if (!failed_.ok()) return failed_;
  CheckAndApply(write);
  chunk.ticket = next_ticket_++;
  chunk.last_index_after = bounds_.last_index();
  *ticket = chunk.ticket;
  queue_bytes_ += chunk.bytes.size();
  queue_.push_back(std::move(chunk));
  work_cv_.notify_one();
  return Status::Ok();
}

Status Wal::WaitDurable(WalTicket ticket) {
  std::unique_lock lock(mu_);
  SYNOD_ASSERT(ticket < next_ticket_, "a ticket returned by Append");
  durable_cv_.wait(lock, [&] { return durable_ticket_ >= ticket || !failed_.ok(); });
  return durable_ticket_ >= ticket ? Status::Ok() : failed_;
}

Status Wal::AppendSync(const WalWrite& write) {
  WalTicket ticket = 0;
  if (Status s = Append(write, &ticket); !s.ok()) return s;
  return WaitDurable(ticket);
}

void Wal::Run() {
  for (;;) {
    std::vector<WalChunk> batch;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and everything queued is written
      batch.swap(queue_);          // everything that queued up while we last synced
      queue_bytes_ = 0;
    }
    space_cv_.notify_all();
    Status s = writer_.Write(batch);
    if (s.ok()) s = writer_.Sync();
    if (!s.ok()) {
      Fail(s);
      Tell(batch, s);
      return;
    }
    Publish(batch);
  }
}

void Wal::Publish(const std::vector<WalChunk>& batch) {
  uint64_t durable_index = 0;
  {
    std::lock_guard lock(mu_);
    for (const WalChunk& chunk : batch) {
      counters_.records_written += chunk.records;
      if (chunk.snapshot) {
        durable_snapshot_index_ = std::max(durable_snapshot_index_, chunk.snapshot->index());
      }
    }
    counters_.appends_written += batch.size();
    ++counters_.group_commits;
    durable_ticket_ = batch.back().ticket;
    durable_index_ = batch.back().last_index_after;
    durable_index = durable_index_;
  }
  durable_cv_.notify_all();
  if (options_.on_durable) options_.on_durable(durable_index);
  Tell(batch, Status::Ok());
}

void Wal::Fail(const Status& status) {
  std::vector<WalChunk> dropped;
  {
    std::lock_guard lock(mu_);
    failed_ = status;
    dropped.swap(queue_);
    queue_bytes_ = 0;
  }
  durable_cv_.notify_all();
  space_cv_.notify_all();
  Tell(dropped, status);
}

Status Wal::ReleaseBefore(uint64_t index, uint64_t* segments_released) {
  uint64_t limit = 0;
  {
    std::lock_guard lock(mu_);
    limit = std::min(index, durable_snapshot_index_);
  }
  uint64_t released = 0;
  const Status s = writer_.ReleaseBefore(limit, &released);
  {
    std::lock_guard lock(mu_);
    counters_.segments_released += released;
  }
  if (segments_released != nullptr) *segments_released = released;
  return s;
}

uint64_t Wal::last_index() const {
  std::lock_guard lock(mu_);
  return bounds_.last_index();
}

uint64_t Wal::durable_index() const {
  std::lock_guard lock(mu_);
  return durable_index_;
}

uint64_t Wal::durable_snapshot_index() const {
  std::lock_guard lock(mu_);
  return durable_snapshot_index_;
}

Status Wal::status() const {
  std::lock_guard lock(mu_);
  return failed_;
}

WalCounters Wal::counters() const {
  WalCounters c;
  {
    std::lock_guard lock(mu_);
    c = counters_;
  }
  c.syncs = writer_.syncs();
  c.bytes_written = writer_.bytes_written();
  c.segments_created = writer_.segments_created();
  return c;
}

}  // namespace synod::storage
