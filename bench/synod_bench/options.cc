#include "options.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "report.h"

namespace synod::bench {

std::optional<Nanos> ParseDuration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double number = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || !std::isfinite(number) || number < 0) return std::nullopt;
  const std::string unit(end);
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1e9;
  } else if (unit == "ms") {
    scale = 1e6;
  } else if (unit == "us") {
    scale = 1e3;
  } else if (unit == "ns") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60e9;
  } else if (unit == "h") {
    scale = 3600e9;
  } else {
    return std::nullopt;
  }
  return Nanos(static_cast<int64_t>(number * scale));
}

std::string FormatDuration(Nanos d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%gs", static_cast<double>(d.count()) / 1e9);
  return buf;
}

std::optional<std::string> NormalizeEndpoint(std::string text) {
  if (text.rfind("https://", 0) == 0) return std::nullopt;
  if (text.rfind("http://", 0) == 0) text = text.substr(7);
  while (!text.empty() && text.back() == '/') text.pop_back();
  if (text.empty() || text.find('/') != std::string::npos) return std::nullopt;
  if (text.find(':') == std::string::npos) text += ":2379";
  return text;
}

std::vector<std::pair<std::string, std::string>> Options::AsJsonFields() const {
  std::string eps = "[";
  for (size_t i = 0; i < endpoints.size(); ++i) {
    eps += (i ? "," : "") + JsonString(endpoints[i]);
  }
  eps += "]";
  auto num = [](double v) { return JsonNumber(v); };
  return {
      {"endpoints", eps},
      {"conns", num(conns)},
      {"clients", num(clients)},
      {"total", num(static_cast<double>(total))},
      {"duration_s", num(static_cast<double>(duration.count()) / 1e9)},
      {"rate", num(rate)},
      {"timeout_s", num(static_cast<double>(timeout.count()) / 1e9)},
      {"prefix", JsonString(prefix)},
      {"key_space", num(static_cast<double>(key_space))},
      {"key_size", num(key_size)},
      {"val_size", num(val_size)},
      {"seq_keys", seq_keys ? "true" : "false"},
      {"preload", num(static_cast<double>(preload))},
      {"consistency", JsonString(serializable ? "s" : "l")},
      {"read_ratio", num(read_ratio)},
      {"max_retries", num(max_retries)},
      {"watchers", num(watchers)},
      {"locks", num(locks)},
      {"lease_ttl_s", num(static_cast<double>(lease_ttl_s))},
      {"keepalives", num(keepalives)},
      {"seed", num(static_cast<double>(seed))},
  };
}

}  // namespace synod::bench
