// echo_epoll.cpp: a TCP echo server on one epoll loop, level- or edge-triggered, with every
//                 socket non-blocking and a bounded output buffer per client.
// Notes: epoll版本 (its ET server, done right) and 触发机制 (LT vs ET)
// Usage: echo_epoll [--mode lt|et] [--host H] [--port P] [--high-water BYTES] [--read-size BYTES]
//          [--quiet]
// Try:   ./echo_epoll --mode et &   then   nc 127.0.0.1 8088   in two or three shells at once
// Observe: /proc/PID/fdinfo/3 (the epoll fd): `events: 2019` for an idle client (EPOLLIN|EPOLLERR|
//          EPOLLHUP|EPOLLRDHUP; 80002019 with --mode et), 4 (EPOLLOUT) only while an echo waits;
//          strace -e trace=epoll_wait,recvfrom ./echo_epoll --mode et: recv() until EAGAIN.
// Simplifications: recv() of 1024 bytes (the notes' size; --read-size sets it): LT reads once per
//          event and is told again while bytes are left; ET reads until EAGAIN, because it is told
//          only of new arrivals. No cap on one client's turn: one that sends and reads as fast as
//          we echo keeps an ET drain going (epoll(7), "starvation"). No idle timeout.
// Length: about 180 lines of code (266 with comments, blank lines and lone closing braces),
//          over the suite's 150 because the drain, the EPOLLOUT rule, the high-water mark and the
//          fd reserve only make sense together, and splitting them would hide how they interact.
// See also: epoll(7), epoll_ctl(2), accept4(2), ev(3) of libev ("accept()ing when you can't");
//          lab 17.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <vector>

#include "echo.hpp"  // lab::set_nodelay
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";  // the notes bind 'localhost'
constexpr std::uint16_t notes_port = 8088;              // epoll版本 binds 8088
constexpr int notes_backlog = 1000;                     // and calls listen(1000)
constexpr std::size_t notes_bufsize = 1024;             // and recv(1024)
constexpr std::size_t max_read_size = 1 << 20;
constexpr std::size_t default_high_water = 16 << 10;  // bytes waiting for a client, at most
constexpr int max_events = 64;
constexpr std::size_t shown_bytes = 64;  // bytes of each receive the log shows
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::string port_help =
    "port to listen on (default " + std::to_string(notes_port) + "; 0: the kernel picks)";
const std::string water_help = "stop reading a client while this many of its bytes wait to go "
                               "back (default " +
                               std::to_string(default_high_water) + ")";
const std::string read_help = "bytes one recv() asks for (default " +
                              std::to_string(notes_bufsize) +
                              ", the notes'; lab 19 measures 65536)";
const std::array options{
    lab::Option{"--mode", "lt|et", "level-triggered (the default) or edge-triggered (EPOLLET)"},
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--high-water", "BYTES", water_help},
    lab::Option{"--read-size", "BYTES", read_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
};
const lab::Program program{"echo_epoll", "Echoes every TCP client, all in one epoll loop.",
                           options};

std::string preview(std::string_view data) {
    return lab::quoted(data.substr(0, shown_bytes)) + (data.size() > shown_bytes ? "..." : "");
}
bool again(ssize_t n) {
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct Conn {
    lab::Fd fd;
    std::string who;
    std::string out;            // received, not yet sent back
    bool eof = false;           // its FIN came: nothing more to read
    std::uint32_t watched = 0;  // the mask epoll has for it now
};

struct Server {
    lab::Fd ep, listener;
    bool et, quiet;
    std::size_t high_water;
    std::vector<char> buf;                // one recv()'s bytes: --read-size of them
    std::unordered_map<int, Conn> conns;  // one state per open fd, erased when the fd is closed
    std::array<lab::Fd, 2> reserve{};     // fds held back for the moment accept4() finds none
    bool full = false;                    // out of fds: new clients are closed at once

    bool reading(const Conn& c) const { return !c.eof && c.out.size() < high_water; }
    // EPOLLOUT only while bytes wait: a socket is nearly always writable, so asking for it all
    // the time would wake a level-triggered loop at once, forever.
    std::uint32_t wanted(const Conn& c) const {
        return (reading(c) ? EPOLLIN | EPOLLRDHUP : 0u) | (c.out.empty() ? 0u : EPOLLOUT) |
               (et ? EPOLLET : 0u);
    }
    void watch(int op, int fd, std::uint32_t events) const {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        lab::check(::epoll_ctl(ep.get(), op, fd, &ev), "epoll_ctl");
    }
    bool take_reserve() {
        for (lab::Fd& fd : reserve) {
            fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        return reserve[0] && reserve[1];
    }

    // LT: one accept4() per event (the listener is reported again while clients wait). ET: until
    // EAGAIN, or clients that arrived together wait for a new arrival. Out of fds, the connection
    // would stay queued and the listener readable: free the reserve, take it, close it.
    void accept_clients() {
        do {
            lab::Address peer;
            const int fd =
                ::accept4(listener.get(), peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (again(fd)) {
                return;
            }
            if (fd < 0 && (errno == ECONNABORTED || errno == EINTR)) {
                continue;  // that client left before we got to it
            }
            if (fd < 0 && (errno == EMFILE || errno == ENFILE) && !full) {
                const int err = errno;  // give the reserve back first: with no fd free at all,
                reserve = {};           // even a log line can fail (a sanitizer opens a pipe)
                full = true;
                lab::say("out of fds: accept4: ", ::strerror(err), " [", ::strerrorname_np(err),
                         "]; closing new clients at once until one leaves");
                continue;
            }
            lab::Fd conn(lab::check(fd, "accept4"));
            lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
            const std::string who = lab::to_string(peer);
            if (full) {
                conn.reset();  // it sees EOF at once, instead of waiting in the queue
                lab::say("shed ", who, ": no fd to serve it; closed at once");
                continue;
            }
            lab::say("accepted ", who);
            Conn& c = conns.try_emplace(fd, Conn{std::move(conn), who, {}}).first->second;
            watch(EPOLL_CTL_ADD, fd, c.watched = wanted(c));
        } while (et);
    }

    // Unregister, close, forget: a later connection given the same fd number starts afresh.
    void close_conn(int fd, const std::string& line) {
        lab::check(::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd, nullptr), "epoll_ctl(DEL)");
        conns.erase(fd);
        lab::say(line);
        if (full && take_reserve()) {
            full = false;
            lab::say("fds free again: accepting clients");
        }
    }

    // Send what waits until it is gone or the socket is full (EPOLLOUT will say when to go on).
    static void flush(Conn& c) {
        while (!c.out.empty()) {
            const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
            if (again(n)) {
                return;
            }
            c.out.erase(0, static_cast<std::size_t>(lab::check(n, "send")));
        }
    }

    // Read and echo: each receive is logged (unless --quiet), appended to c.out and flushed;
    // recv() 0 sets c.eof. Stop at the high-water mark: the bytes then stay in the kernel, the
    // client's window closes and TCP holds it back, whatever it sends.
    void read_from(Conn& c) {
        // SOLUTION: while reading(c): recv() up to buf.size() bytes (LT once, ET until EAGAIN)
        do {
            if (!reading(c)) {
                return;
            }
            // [slide:drain]
            const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
            if (again(n)) {
                return;  // drained: ET reports this socket again only when new bytes arrive
            }
            if (n == 0) {
                c.eof = true;
                return;
            }
            // [/slide:drain]
            const std::string_view data(buf.data(),
                                        static_cast<std::size_t>(lab::check(n, "recv")));
            if (!quiet) {
                lab::say("recv ", n, " bytes from ", c.who, ": ", preview(data));
            }
            c.out.append(data);
            flush(c);
        } while (et);  // the drain loop: edge-triggered, stopping early loses the rest
        // END
    }

    // A client's event. Bits, not the whole mask: ERR and HUP come unasked, and mean that the
    // next send() or recv() fails (an RST), so they count as writable and readable.
    void ready(int fd, std::uint32_t events) {
        Conn& c = conns.at(fd);  // each fd once per batch, closed only by its own event
        try {
            const bool paused = !reading(c);
            if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                flush(c);
            }
            if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) || (paused && reading(c))) {
                read_from(c);  // also after a pause: in ET no new event comes for waiting bytes
            }
            if (c.eof && c.out.empty()) {
                return close_conn(fd,
                                  "closed " + c.who + ": recv returned 0 (its FIN); closing ours");
            }
            if (const std::uint32_t w = wanted(c); w != c.watched) {
                c.watched = w;
                watch(EPOLL_CTL_MOD, fd, w);
            }
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
            const char* name = ::strerrorname_np(e.code().value());
            close_conn(fd, "dropped " + c.who + ": " + e.what() + " [" + name + "]");
        }
    }
};

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const std::string mode = args.get("--mode", "lt");
    if (mode != "lt" && mode != "et") {
        throw lab::usage_error("--mode wants lt or et, not '" + mode + "'");
    }
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(notes_port), SOCK_STREAM);
    Server s{
        lab::Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
        lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
        mode == "et",
        args.flag("--quiet"),
        args.number<std::size_t>("--high-water", 1, std::size_t{1} << 30, default_high_water),
        std::vector<char>(args.number<std::size_t>("--read-size", 1, max_read_size, notes_bufsize)),
        {}};
    // SO_REUSEADDR, before bind(): a restart must be able to bind while connections of the last
    // run wait in TIME_WAIT (lab 10). A running server still makes bind() fail (EADDRINUSE).
    const int on = 1;
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), notes_backlog), "listen");
    s.watch(EPOLL_CTL_ADD, s.listener.get(), EPOLLIN | (s.et ? EPOLLET : 0u));
    if (!s.take_reserve()) {
        lab::check(-1, "open /dev/null");
    }
    lab::announce_ready(s.listener.get());

    // SOLUTION: epoll_wait() forever; per event: accept_clients() or ready(fd, events)
    std::array<epoll_event, max_events> events{};
    for (;;) {
        const int n = ::epoll_wait(s.ep.get(), events.data(), max_events, -1);
        if (n < 0 && errno == EINTR) {
            continue;  // resumed after SIGSTOP/SIGCONT (signal(7)): not an error
        }
        for (const epoll_event& e : std::span(events).first(lab::check(n, "epoll_wait"))) {
            if (e.data.fd == s.listener.get()) {
                s.accept_clients();
            } else {
                s.ready(e.data.fd, e.events);
            }
        }
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
