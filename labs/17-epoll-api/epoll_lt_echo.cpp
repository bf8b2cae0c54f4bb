// epoll_lt_echo.cpp: the epoll walkthrough's level-triggered echo server, done right: one thread,
//                    one epoll object, every client echoed byte for byte.
// Notes: the epoll walkthrough, its example server (after 相关用法)
// Usage: epoll_lt_echo [--host H] [--port P] [--quiet] [--notes-order]
// Try:   ./epoll_lt_echo &   then   nc 127.0.0.1 9292   in two or three shells at once
// Observe: strace -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto ./epoll_lt_echo: one
//          epoll_wait, then calls for exactly the fds it reported; /proc/PID/fdinfo/3 (the epoll
//          fd) has one tfd: line per registered fd.
// Simplifications: level-triggered, one recv() of up to 1024 bytes per event (epoll reports the
//          fd again while bytes are left); the reply is written with a blocking loop, so a client
//          that never reads its echo stalls everyone (lab 18 queues output behind EPOLLOUT).
// See also: epoll(7), epoll_ctl(2), epoll_wait(2), accept4(2); epoll_api_tour.cpp; lab 18.
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <map>
#include <string>

#include "lab.hpp"

namespace {

constexpr std::uint16_t walkthrough_port = 9292;   // the walkthrough's server binds 9292
constexpr std::size_t walkthrough_bufsize = 1024;  // and reads recv(1024)
constexpr int max_events = 64;
const std::string port_help =
    "port to listen on (default " + std::to_string(walkthrough_port) + "; 0: the kernel picks)";
const std::array options{
    lab::Option{"--host", "H", "address to listen on (default 127.0.0.1)"},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "do not log each received chunk"},
    lab::Option{"--notes-order", "",
                "on a client's end, close() before EPOLL_CTL_DEL, as the "
                "walkthrough does (the DEL then fails with EBADF)"},
};
const lab::Program program{"epoll_lt_echo", "Echoes every TCP client, all in one epoll loop.",
                           options};

struct Client {
    lab::Fd fd;
    std::string who;
};

struct Server {
    lab::Fd ep;
    lab::Fd listener;
    std::map<int, Client> clients;
    bool quiet;
    bool notes_order;

    // A new connection: accept it and watch it for input (level-triggered: no EPOLLET).
    void accept_one() {
        lab::Address peer;
        const int fd = ::accept4(listener.get(), peer.get(), &peer.len, SOCK_CLOEXEC);
        if (fd < 0 && (errno == EAGAIN || errno == ECONNABORTED)) {
            return;  // the listener is non-blocking: the client left before we got to it
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = conn.get();
        lab::check(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, conn.get(), &ev), "epoll_ctl(ADD)");
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who);
        clients.emplace(fd, Client{std::move(conn), who});
    }

    // Unregister, then close: the other order makes EPOLL_CTL_DEL fail with EBADF, and a close()
    // that does not drop the last reference would leave the fd registered (epoll(7) Q6).
    void drop(int fd, std::string_view why) {
        const auto it = clients.find(fd);
        const std::string who = it->second.who;
        if (notes_order) {
            it->second.fd.reset();
        }
        // [slide:unregister-close]
        lab::check(::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd, nullptr),
                   "epoll_ctl(DEL) fd " + std::to_string(fd));
        clients.erase(it);
        // [/slide:unregister-close]
        lab::say("closed ", who, " (", why, ")");
    }

    // One recv() per event. The bytes go back as they came: a UTF-8 character cut in two by
    // the 1024-byte read is echoed whole, because nothing here decodes it.
    void echo(int fd) {
        std::array<char, walkthrough_bufsize> buf{};
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n == 0) {
            drop(fd, "recv returned 0");
            return;
        }
        try {
            const std::string_view data(buf.data(),
                                        static_cast<std::size_t>(lab::check(n, "recv")));
            if (!quiet) {
                lab::say("received ", n, " bytes from ", clients.at(fd).who, ": ",
                         lab::quoted(data));
            }
            lab::write_all(fd, data);
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
            drop(fd, std::string(e.what()) + " [" + ::strerrorname_np(e.code().value()) + "]");
        }
    }
};

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", "127.0.0.1"), args.port(walkthrough_port), SOCK_STREAM);
    Server s{lab::Fd(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")),
             lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
             {},
             args.flag("--quiet"),
             args.flag("--notes-order")};
    const int on = 1;
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), 128), "listen");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = s.listener.get();
    lab::check(::epoll_ctl(s.ep.get(), EPOLL_CTL_ADD, s.listener.get(), &ev), "epoll_ctl(ADD)");
    lab::announce_ready(s.listener.get());

    // Steps 3-6 of the walkthrough's 原理图: wait, act on each reported fd, repeat.
    // BEGIN SOLUTION: epoll_wait (no timeout) and, per event, accept_one() or echo(); test bits
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
            } else if (e.events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                s.echo(e.data.fd);  // ERR and HUP come unasked: recv() tells which end it was
            }
        }
        // [/slide:event-loop]
    }
    // STUB (void)s;
    // STUB throw std::runtime_error("the event loop is not written yet");
    // END SOLUTION
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
