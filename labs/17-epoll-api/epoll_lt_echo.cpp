// epoll_lt_echo.cpp: the epoll walkthrough's level-triggered echo server, done right: one thread,
//                    one epoll object, every client echoed byte for byte.
// Notes: the epoll walkthrough, its example server (after 相关用法)
// Usage: epoll_lt_echo [--host H] [--port P] [--quiet] [--notes-order]
// Try:   ./epoll_lt_echo &   then   nc 127.0.0.1 9292   in two or three shells at once
// Observe: strace -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto ./epoll_lt_echo: one
//          epoll_wait, then calls for exactly the fds it reported; /proc/PID/fdinfo/3 (the epoll
//          fd) has one tfd: line per registered fd.
// Simplifications: level-triggered, one recv() of up to 1024 bytes per event (epoll reports the
//          fd again while bytes are left). At most one chunk waits per client: while its echo
//          does not fit, the server watches that client for EPOLLOUT only and reads no more from
//          it, so TCP flow control holds a client that never reads (lab 18: real output queues).
//          At the fd limit (EMFILE) it stops watching the listener until a client leaves, and
//          gives back two fds it kept in reserve so it can still work meanwhile.
// See also: epoll(7), epoll_ctl(2), epoll_wait(2), accept4(2); epoll_api_tour.cpp; lab 18.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <system_error>

#include "echo.hpp"  // lab::set_nodelay
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";  // the walkthrough binds 0.0.0.0
constexpr std::uint16_t walkthrough_port = 9292;        // the walkthrough's server binds 9292
constexpr std::size_t walkthrough_bufsize = 1024;       // and reads recv(1024)
constexpr int walkthrough_backlog = 128;                // and calls listen(128)
constexpr int max_events = 64;
constexpr std::size_t shown_bytes = 64;  // bytes of each receive the log shows
const std::string port_help =
    "port to listen on (default " + std::to_string(walkthrough_port) + "; 0: the kernel picks)";
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
    lab::Option{"--notes-order", "",
                "on a client's end, close() before EPOLL_CTL_DEL, as the "
                "walkthrough does (the DEL then fails with EBADF)"},
};
const lab::Program program{"epoll_lt_echo", "Echoes every TCP client, all in one epoll loop.",
                           options};

// The first bytes of one receive, C-escaped, and "..." when there were more.
std::string preview(std::string_view data) {
    return lab::quoted(data.substr(0, shown_bytes)) + (data.size() > shown_bytes ? "..." : "");
}
std::string reason(const std::system_error& e) {
    return std::string(e.what()) + " [" + ::strerrorname_np(e.code().value()) + "]";
}

struct Client {
    lab::Fd fd;
    std::string who;
    std::string pending;   // the part of the last echo that did not fit yet
    bool waiting = false;  // watched for EPOLLOUT (instead of EPOLLIN) until pending is sent
};

struct Server {
    lab::Fd ep;
    lab::Fd listener;
    std::map<int, Client> clients;
    bool quiet;
    bool notes_order;
    bool paused = false;             // not watching the listener: out of fds
    std::array<lab::Fd, 2> spare{};  // fds held back for the moment the others run out

    // Two fds on /dev/null kept in reserve: at the fd limit they are given back, so the server
    // still has room for whatever needs an fd meanwhile (a log file, a resolver, a sanitizer's
    // pipe) while it waits for a client to leave.
    bool reserve() {
        for (lab::Fd& fd : spare) {
            fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        return spare[0] && spare[1];
    }

    void watch(int op, int fd, std::uint32_t events) const {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        lab::check(::epoll_ctl(ep.get(), op, fd, &ev), "epoll_ctl");
    }

    // A new connection: accept it and watch it for input (level-triggered: no EPOLLET).
    void accept_one() {
        lab::Address peer;
        const int fd =
            ::accept4(listener.get(), peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EAGAIN || errno == ECONNABORTED)) {
            return;  // the listener is non-blocking: the client left before we got to it
        }
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            // The connection stays queued, so a level-triggered listener would be reported
            // again at once, forever: stop watching it until a client leaves.
            lab::say("paused accepting: accept4: ", ::strerror(errno), " [",
                     ::strerrorname_np(errno), "]");
            watch(EPOLL_CTL_MOD, listener.get(), 0);
            spare = {};
            paused = true;
            return;
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        watch(EPOLL_CTL_ADD, conn.get(), EPOLLIN);
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who);
        clients.emplace(fd, Client{std::move(conn), who, {}});
    }

    // Unregister, then close: the other order makes EPOLL_CTL_DEL fail with EBADF, and a close()
    // that does not drop the last reference would leave the fd registered (epoll(7) Q6).
    void drop(int fd, const std::string& line) {
        const auto it = clients.find(fd);
        if (notes_order) {
            it->second.fd.reset();
        }
        // [slide:unregister-close]
        lab::check(::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd, nullptr),
                   "epoll_ctl(DEL) fd " + std::to_string(fd));
        clients.erase(it);
        // [/slide:unregister-close]
        lab::say(line);
        if (paused && reserve()) {
            lab::say("resumed accepting");  // fds are free again
            watch(EPOLL_CTL_MOD, listener.get(), EPOLLIN);
            paused = false;
        }
    }

    // Send what is pending; what does not fit waits for EPOLLOUT, and reading waits with it.
    void flush(Client& c) const {
        const ssize_t n = ::send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            lab::check(n, "send");
        }
        c.pending.erase(0, n < 0 ? 0 : static_cast<std::size_t>(n));
        if (c.waiting != !c.pending.empty()) {
            c.waiting = !c.pending.empty();
            watch(EPOLL_CTL_MOD, c.fd.get(), c.waiting ? EPOLLOUT : EPOLLIN);
        }
    }

    // One recv() per event. The bytes go back as they came: a UTF-8 character cut in two by
    // the 1024-byte read is echoed whole, because nothing here decodes it.
    void echo(Client& c) {
        std::array<char, walkthrough_bufsize> buf{};
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n == 0) {
            return drop(c.fd.get(),
                        "closed " + c.who + ": recv returned 0 (its FIN); closing ours");
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(lab::check(n, "recv")));
        if (!quiet) {
            lab::say("recv ", n, " bytes from ", c.who, ": ", preview(data));
        }
        c.pending = data;
        flush(c);
    }

    // A client's event: test bits, never the whole mask. ERR and HUP come unasked (an RST is
    // EPOLLIN|EPOLLERR|EPOLLHUP): recv() or send() then says what happened.
    void ready(int fd, std::uint32_t events) {
        Client& c = clients.at(fd);
        try {
            if (!c.pending.empty() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                flush(c);
            } else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                echo(c);
            }
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
            drop(fd, "dropped " + c.who + ": " + reason(e));
        }
    }
};

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(walkthrough_port), SOCK_STREAM);
    Server s{lab::Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
             lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
             {},
             args.flag("--quiet"),
             args.flag("--notes-order")};
    const int on = 1;
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), walkthrough_backlog), "listen");
    s.watch(EPOLL_CTL_ADD, s.listener.get(), EPOLLIN);
    if (!s.reserve()) {
        lab::check(-1, "open /dev/null");
    }
    lab::announce_ready(s.listener.get());

    // Steps 3-6 of the walkthrough's 原理图: wait, act on each reported fd, repeat.
    // SOLUTION: epoll_wait (no timeout) and, per event, accept_one() or ready()
    std::array<epoll_event, max_events> events{};
    // [slide:event-loop]
    for (;;) {
        const int n = ::epoll_wait(s.ep.get(), events.data(), max_events, -1);
        if (n < 0 && errno == EINTR) {
            continue;  // resumed after SIGSTOP/SIGCONT (signal(7)): not an error
        }
        for (const epoll_event& e : std::span(events).first(lab::check(n, "epoll_wait"))) {
            if (e.data.fd == s.listener.get()) {
                s.accept_one();
            } else {
                s.ready(e.data.fd, e.events);
            }
        }
        // [/slide:event-loop]
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
