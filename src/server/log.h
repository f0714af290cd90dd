// The server's log: one line per event on stderr, with a level, as etcd's --log-level.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace synod::server {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error" (etcd's levels; "panic" and "fatal" read as "error").
bool SetLogLevel(std::string_view level);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view message);

inline void LogInfo(std::string_view m) { LogLine(LogLevel::kInfo, m); }
inline void LogWarn(std::string_view m) { LogLine(LogLevel::kWarn, m); }
inline void LogError(std::string_view m) { LogLine(LogLevel::kError, m); }
inline void LogDebug(std::string_view m) { LogLine(LogLevel::kDebug, m); }

// A member id as etcd prints it: lowercase hex without leading zeros.
std::string MemberIdHex(uint64_t id);

}  // namespace synod::server
