// echo_minimal.cpp: the benchmark's throughput ceiling. The least an epoll echo server can be:
//                   one thread, level-triggered, one 64 KiB read() per event and a write of what
//                   it read; only bytes the socket would not take are kept (and reading that
//                   client stops until they are gone).
// Notes: epoll版本 (the same loop as lab 18, with nothing but the echo)
// Usage: echo_minimal [--host H] [--port P]
// Try:   ./echo_minimal --port 0   then   nc 127.0.0.1 PORT   in two shells
// Observe: strace -c -p PID under load: epoll_wait(), read() and sendto() only; epoll_ctl() just
//          for connects, closes and a full socket (a long-lived echo never needs it).
// Simplifications: no log line at all besides the ready line and errors; every client is
//          trusted to read its echo (while it does not, that client is not read, so at most 64 KiB
//          waits per client); out of fds (EMFILE) the server stops with an error line instead of
//          shedding clients as lab 18 does.
// See also: epoll(7), accept4(2), tcp(7) TCP_NODELAY; lab 18 (echo_epoll, the teaching version);
//          rr_floor.cpp, the latency ceiling.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <span>
#include <string>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;     // the notes' servers bind 8088
constexpr int backlog = 4096;                  // the benchmark's connectors may queue up
constexpr std::size_t buffer_size = 64 << 10;  // one read() per event takes up to this much
constexpr int max_events = 256;

const std::array options{
    lab::Option{"--host", "H", "address to listen on (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to listen on (default {}; 0: the kernel picks)", notes_port},
};
const lab::Program program{"echo_minimal",
                           "Echoes every TCP client in one level-triggered epoll loop, with "
                           "nothing else (the throughput ceiling).",
                           options};

bool again(ssize_t n) {
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// A bound on what the server holds: bytes the socket would not take wait here, and the client is
// not read again until they are gone (EPOLLOUT instead of EPOLLIN), so at most 64 KiB per client.
struct Conn {
    lab::Fd fd;
    std::string unsent;
};

std::size_t sent(ssize_t n) {
    return again(n) ? 0 : static_cast<std::size_t>(lab::check(n, "send"));
}

struct Server {
    lab::Fd ep, listener;
    std::unordered_map<int, Conn> conns;  // one per open client, keyed by its fd
    std::vector<char> buf = std::vector<char>(buffer_size);

    void watch(int op, int fd, std::uint32_t events) const {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        lab::check(::epoll_ctl(ep.get(), op, fd, &ev), "epoll_ctl");
    }
    // Level-triggered: one accept4() per event; the listener is reported again while others wait.
    void accept_one() {
        const int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (again(fd) || (fd < 0 && (errno == ECONNABORTED || errno == EINTR))) {
            return;
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        const int on = 1;  // echo at once, never held back by Nagle's algorithm (RFC 896)
        lab::check(::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on),
                   "setsockopt(TCP_NODELAY)");
        watch(EPOLL_CTL_ADD, fd, EPOLLIN);
        conns.try_emplace(fd, Conn{std::move(conn), {}});
    }
    // One event of a client (EPOLLERR/EPOLLHUP too: the next call reports the error); false
    // once the client has sent its FIN and every byte went back.
    bool ready(int fd) {
        Conn& c = conns.at(fd);
        if (!c.unsent.empty()) {
            c.unsent.erase(0, sent(::send(fd, c.unsent.data(), c.unsent.size(), MSG_NOSIGNAL)));
            if (c.unsent.empty()) {
                watch(EPOLL_CTL_MOD, fd, EPOLLIN);
            }
            return true;
        }
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (again(n)) {
            return true;
        }
        const auto len = static_cast<std::size_t>(lab::check(n, "read"));
        if (len == 0) {
            return false;
        }
        const std::size_t done = sent(::send(fd, buf.data(), len, MSG_NOSIGNAL));
        if (done < len) {
            c.unsent.assign(buf.data() + done, len - done);
            watch(EPOLL_CTL_MOD, fd, EPOLLOUT);
        }
        return true;
    }
};

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);
    Server s{lab::Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
             lab::Fd(lab::check(
                 ::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket")),
             {}};
    const int on = 1;  // SO_REUSEADDR: restart while the last run's connections are in TIME_WAIT
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), backlog), "listen");
    s.watch(EPOLL_CTL_ADD, s.listener.get(), EPOLLIN);
    lab::announce_ready(s.listener.get());

    std::array<epoll_event, max_events> events{};
    for (;;) {
        const int n = ::epoll_wait(s.ep.get(), events.data(), max_events, -1);
        if (n < 0 && errno == EINTR) {
            continue;  // resumed after SIGSTOP/SIGCONT
        }
        for (const epoll_event& e : std::span(events).first(lab::check(n, "epoll_wait"))) {
            const int fd = e.data.fd;
            if (fd == s.listener.get()) {
                s.accept_one();
                continue;
            }
            bool open = true;
            try {
                open = s.ready(fd);
            } catch (const std::system_error& err) {
                if (!lab::peer_gone(err)) {
                    throw;
                }
                open = false;  // a reset client is dropped silently
            }
            if (!open) {
                s.conns.erase(fd);  // its close() also takes it off the interest list
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
