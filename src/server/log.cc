#include "server/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace synod::server {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
}  // namespace

bool SetLogLevel(std::string_view level) {
  LogLevel l;
  if (level == "debug") {
    l = LogLevel::kDebug;
  } else if (level == "info") {
    l = LogLevel::kInfo;
  } else if (level == "warn") {
    l = LogLevel::kWarn;
  } else if (level == "error" || level == "panic" || level == "fatal") {
    l = LogLevel::kError;
  } else {
    return false;
  }
  g_level.store(static_cast<int>(l));
  return true;
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void LogLine(LogLevel level, std::string_view message) {
  if (!LogEnabled(level)) return;
  static constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  std::lock_guard lock(g_mu);
  std::fprintf(stderr, "%s.%03dZ %-5s %.*s\n", stamp, static_cast<int>(ms),
               kNames[static_cast<int>(level)], static_cast<int>(message.size()), message.data());
}

std::string MemberIdHex(uint64_t id) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(id));
  return buf;
}

}  // namespace synod::server
