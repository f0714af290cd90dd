// Names the calling thread, so that `top -H`, `ps -L`, gdb and perf tell synod's threads
// apart. Linux keeps at most 15 characters; longer names are cut.
#pragma once

#include <pthread.h>

#include <string>

namespace synod {

inline void NameThisThread(const std::string& name) {
  (void)pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace synod
