// rr_floor.cpp: the benchmark's latency ceiling. A blocking TCP echo server that serves one
//               connection at a time with exactly one read() and one write per round trip, so a
//               request/response costs the least a kernel socket server can spend on it.
// Notes: 服务器实现 / 单进程服务器 (the same loop as lab 11, stripped to the syscalls)
// Usage: rr_floor [--host H] [--port P]
// Try:   ./rr_floor --port 0   then   sockperf pp --tcp -i 127.0.0.1 -p PORT -t 2
// Observe: strace -c -p PID during a run: one read() and one sendto() (lab::write_all's send())
//          per round trip and nothing else: no epoll_wait(), no poll().
// Simplifications: one client at a time (others wait in the accept queue), no log line at all
//          besides the ready line and errors: a log write per message would be measured too. A
//          client that resets is dropped silently and the next one accepted.
// See also: tcp(7) TCP_NODELAY, read(2), send(2); UNP 5.2 (str_echo); lab 11 (the iterative
//          server it is a bare copy of); echo_minimal.cpp, the throughput ceiling.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <span>
#include <system_error>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;     // the notes' servers bind 8088
constexpr int backlog = 4096;                  // the benchmark's connectors may queue up
constexpr std::size_t buffer_size = 64 << 10;  // one read() takes whatever arrived

const std::array options{
    lab::Option{"--host", "H", "address to listen on (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to listen on (default {}; 0: the kernel picks)", notes_port},
};
const lab::Program program{"rr_floor",
                           "Echoes one TCP client at a time: one read() and one write per round "
                           "trip (the latency ceiling).",
                           options};

// One client to its EOF. TCP_NODELAY: a small echo goes out at once, never held back by Nagle's
// algorithm while an earlier segment waits for its ACK (RFC 896).
void echo(const lab::Fd& conn) {
    const int on = 1;
    lab::check(::setsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on),
               "setsockopt(TCP_NODELAY)");
    std::array<std::byte, buffer_size> buf{};
    for (;;) {
        const ssize_t n = lab::check(::read(conn.get(), buf.data(), buf.size()), "read");
        if (n == 0) {
            return;  // the client's FIN
        }
        lab::write_all(conn.get(), std::span(buf).first(static_cast<std::size_t>(n)));
    }
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);
    const lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    const int on = 1;  // SO_REUSEADDR: restart while the last run's connections are in TIME_WAIT
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), backlog), "listen");
    lab::announce_ready(listener.get());
    for (;;) {
        const int fd = ::accept(listener.get(), nullptr, nullptr);
        if (fd < 0 && (errno == ECONNABORTED || errno == EINTR)) {
            continue;  // that client left before we got to it
        }
        const lab::Fd conn(lab::check(fd, "accept"));
        try {
            echo(conn);
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
