// echo.hpp: the blocking echo loop that lab 11 (echo_iterative.cpp) teaches, for the servers after
// it (labs 12 and 13), which are about how clients are spread over processes and threads, not
// about the loop. Every server of labs 11-18 speaks this protocol: each byte received goes back,
// in order, until the client's EOF, and each echo leaves at once (set_nodelay).
// Tests: tests/unit/test_lab.cpp; the bad-client battery; lab 19's servers spec.
#pragma once
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "lab.hpp"

namespace lab {

inline constexpr std::size_t echo_bufsize = 1024;  // the notes' servers all call recv(1024)
inline constexpr std::size_t preview_bytes = 64;   // bytes of one receive a log line shows

// The first bytes of one receive, C-escaped, and "..." when there were more.
inline std::string preview(std::string_view data) {
    const bool cut = data.size() > preview_bytes;
    return quoted(data.substr(0, preview_bytes)) + (cut ? "..." : "");
}

// TCP_NODELAY on an accepted connection, so each echo is sent at once. Without it Nagle's
// algorithm (RFC 896; tcp(7)) holds a small segment back while an earlier one is unacknowledged,
// and a client that waits for its whole message delays that ACK (RFC 1122 4.2.3.2; up to 40 ms on
// Linux): a 16 KiB message echoed in 1024-byte pieces would wait 40 ms every time (lab 19).
inline void set_nodelay(int fd) {
    const int on = 1;
    check(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on), "setsockopt(TCP_NODELAY)");
}

// Echo `fd` until the peer's FIN (returns) or an error (throws: lab::peer_gone() tells a reset
// or vanished peer from a real failure). on_receive(bytes) sees each receive before its echo.
template <class OnReceive>
void echo_until_eof(int fd, OnReceive&& on_receive) {
    std::array<char, echo_bufsize> buf{};
    for (;;) {
        const ssize_t n = check(::recv(fd, buf.data(), buf.size(), 0), "recv");
        if (n == 0) {
            return;
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(n));
        on_receive(data);
        write_all(fd, data);
    }
}

}  // namespace lab
