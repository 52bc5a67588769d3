// Watches the server's accepted TCP connections, which the HTTP library does not expose:
//  - finds the socket of the connection a handler serves (matched by the peer's address and
//    port among this process's sockets), so that a handler can notice a client that went away
//    while it waits for tokens (a non-streaming request, or a stream with nothing to send yet);
//  - closes connections that spend too long outside a handler, i.e. reading a request: the
//    library's read timeout restarts at every byte, so a client dribbling its headers (slowloris)
//    would otherwise hold a thread for hours.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

namespace loom {

class ConnectionMonitor {
 public:
  // `idle_limit`: longest time a connection may stay outside a handler (keep-alive wait plus
  // reading the next request).
  ConnectionMonitor(int server_port, std::chrono::milliseconds idle_limit);
  ~ConnectionMonitor();
  void start();  // the watchdog thread (checks twice a second)
  void stop();

  // Called when a request's headers have arrived: the connection is active.
  void touch(const std::string& remote_addr, int remote_port);
  // Called when a handler starts and ends (for a stream: when the stream ends). begin returns
  // the connection's socket, or -1 if it could not be found (liveness checks are then skipped).
  int begin_request(const std::string& remote_addr, int remote_port);
  void end_request(int fd);

  // True if the peer has closed or reset the connection (never blocks).
  static bool peer_closed(int fd);

  int64_t num_closed_idle() const { return num_closed_idle_.load(); }

 private:
  struct Conn {
    std::string peer;  // "addr:port"
    int64_t idle_since_us = 0;
    int busy = 0;  // handlers running on it
    bool closed_by_us = false;
  };
  // Refreshes the table from /proc/self/fd: adds new sockets of the server port, drops gone
  // ones; `full` also re-checks known idle entries (a closed descriptor's number may have been
  // reused by a new connection). Caller holds mu_.
  void scan_locked(bool full);
  void watchdog_loop();

  const int server_port_;
  const int64_t idle_limit_us_;
  std::mutex mu_;
  std::unordered_map<int, Conn> conns_;  // by fd
  std::unordered_map<std::string, int> fd_by_peer_;
  std::thread thread_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::atomic<int64_t> num_closed_idle_{0};
};

}  // namespace loom
