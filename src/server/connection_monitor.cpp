#include "server/connection_monitor.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "util/clock.h"

namespace loom {

namespace {

// "addr:port" of a socket address, or "" if it is not IPv4/IPv6.
std::string address_text(const sockaddr_storage& ss, int* port_out) {
  char host[INET6_ADDRSTRLEN] = {0};
  int port = -1;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
  } else {
    return "";
  }
  if (port_out != nullptr) *port_out = port;
  return std::string(host) + ":" + std::to_string(port);
}

// The peer of `fd` if it is a connected socket whose local port is `server_port`, else "".
std::string server_peer(int fd, int server_port) {
  sockaddr_storage local{}, peer{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return "";
  int local_port = -1;
  if (address_text(local, &local_port).empty() || local_port != server_port) return "";
  len = sizeof(peer);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "";  // listener
  return address_text(peer, nullptr);
}

std::string peer_key(const std::string& addr, int port) {
  // IPv4-mapped peers of a dual-stack socket print as "::ffff:a.b.c.d"; the library reports the
  // same text, so plain concatenation matches.
  return addr + ":" + std::to_string(port);
}

}  // namespace

ConnectionMonitor::ConnectionMonitor(int server_port, std::chrono::milliseconds idle_limit)
    : server_port_(server_port), idle_limit_us_(idle_limit.count() * 1000) {}

ConnectionMonitor::~ConnectionMonitor() {
  stop();
}

void ConnectionMonitor::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { watchdog_loop(); });
}

void ConnectionMonitor::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionMonitor::scan_locked(bool full) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  std::unordered_map<int, bool> seen;
  const int own_dir_fd = dirfd(dir);
  const int64_t now = now_us();
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long fd_long = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0') continue;
    int fd = static_cast<int>(fd_long);
    if (fd == own_dir_fd) continue;
    auto it = conns_.find(fd);
    // A connection inside a handler cannot close under us: its thread owns it. A quick scan
    // (a handler looking for its new connection) trusts every known entry.
    if (it != conns_.end() && (it->second.busy > 0 || !full)) {
      seen[fd] = true;
      continue;
    }
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    std::string peer = server_peer(fd, server_port_);
    if (peer.empty()) continue;
    seen[fd] = true;
    if (it != conns_.end() && it->second.peer == peer) continue;
    if (it != conns_.end()) fd_by_peer_.erase(it->second.peer);  // fd reused by a new peer
    conns_[fd] = Conn{peer, now, 0, false};
    fd_by_peer_[peer] = fd;
  }
  closedir(dir);
  for (auto it = conns_.begin(); it != conns_.end();) {
    if (seen.count(it->first) == 0) {
      auto p = fd_by_peer_.find(it->second.peer);
      if (p != fd_by_peer_.end() && p->second == it->first) fd_by_peer_.erase(p);
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void ConnectionMonitor::touch(const std::string& remote_addr, int remote_port) {
  std::lock_guard<std::mutex> lock(mu_);
  auto p = fd_by_peer_.find(peer_key(remote_addr, remote_port));
  if (p == fd_by_peer_.end()) return;
  auto it = conns_.find(p->second);
  if (it != conns_.end()) it->second.idle_since_us = now_us();
}

int ConnectionMonitor::begin_request(const std::string& remote_addr, int remote_port) {
  const std::string key = peer_key(remote_addr, remote_port);
  std::lock_guard<std::mutex> lock(mu_);
  auto p = fd_by_peer_.find(key);
  // New connections are found by a quick scan of unknown descriptors; a full one (which
  // re-checks known idle entries, in case a descriptor number was reused) only if that fails.
  for (bool full : {false, true}) {
    if (p != fd_by_peer_.end()) break;
    scan_locked(full);
    p = fd_by_peer_.find(key);
  }
  if (p == fd_by_peer_.end()) return -1;
  Conn& c = conns_[p->second];
  c.busy += 1;
  return p->second;
}

void ConnectionMonitor::end_request(int fd) {
  if (fd < 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  if (it->second.busy > 0) it->second.busy -= 1;
  it->second.idle_since_us = now_us();
}

bool ConnectionMonitor::peer_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

void ConnectionMonitor::watchdog_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    cv_.wait_for(lock, std::chrono::milliseconds(500));
    if (stopping_) break;
    scan_locked(/*full=*/true);
    const int64_t now = now_us();
    for (auto& [fd, c] : conns_) {
      if (c.busy > 0 || c.closed_by_us || now - c.idle_since_us <= idle_limit_us_) continue;
      // Re-check the identity right before acting: the fd number must still be this peer.
      if (server_peer(fd, server_port_) != c.peer) continue;
      ::shutdown(fd, SHUT_RDWR);  // the owning thread's next read fails and it closes the fd
      c.closed_by_us = true;
      num_closed_idle_.fetch_add(1);
    }
  }
}

}  // namespace loom
