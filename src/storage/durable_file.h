// Small files made durable: the directory fsync and write-then-rename every durable file
// of a member needs (the WAL's directory, snapshot files, the membership file).
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"

namespace synod::storage {

// fsyncs the directory `dir`, so that the names created, renamed or removed in it survive
// a power cut.
Status SyncDirectory(const std::string& dir);

// Replaces the file `path` by `bytes`, all or nothing across a crash: a temporary file
// beside it, fsync, rename over `path`, fsync of the directory.
Status WriteFileDurably(const std::string& path, std::string_view bytes);

}  // namespace synod::storage
