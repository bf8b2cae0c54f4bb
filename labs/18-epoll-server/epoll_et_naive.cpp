// epoll_et_naive.cpp: the notes' edge-triggered epoll server, its logic kept as it is, so that
//                     its three bugs can be watched: a FAILURE DEMO, not a server to copy.
// Notes: epoll版本 (the ET server), which only prints what it receives; this one echoes it
// Usage: epoll_et_naive [--host H] [--port P] [--quiet]
// Try:   ./epoll_et_naive &   head -c 3000 /dev/zero | nc 127.0.0.1 8088 | wc -c   prints 1024
// The bugs, each as the notes have it (echo_epoll.cpp is the same server done right):
//   1. Blocking sockets and one recv(1024) per event: edge-triggered epoll reports a socket when
//      bytes arrive, not while they wait, so of 3000 bytes sent at once 1024 come back and the
//      rest waits until the client sends again (then the next 1024 come back).
//   2. One accept() per event on an edge-triggered listener: of three clients that connect
//      together one is accepted; the others wait in the accept queue for a fourth to arrive.
//   3. `events == EPOLLIN`: a reset client is reported as EPOLLIN|EPOLLERR|EPOLLHUP, which is
//      not equal, so its socket is never read, unregistered or closed (an fd leak).
//   Not kept: the notes' dictionaries of sockets and addresses, never cleaned up.
// See also: epoll(7) (its example of the ET pitfall), lab 17's epoll_api_tour (trigger modes).
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <map>
#include <string>
#include <string_view>

#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";  // the notes bind 'localhost'
constexpr std::uint16_t notes_port = 8088;              // epoll版本 binds 8088
constexpr int notes_backlog = 1000;                     // and calls listen(1000)
constexpr std::size_t notes_bufsize = 1024;             // and recv(1024)
constexpr int max_events = 64;
constexpr std::size_t shown_bytes = 64;
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::string port_help =
    "port to listen on (default " + std::to_string(notes_port) + "; 0: the kernel picks)";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
};
const lab::Program program{"epoll_et_naive",
                           "The notes' edge-triggered echo server, bugs kept (a failure demo).",
                           options};

void watch(int ep, int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;  // the notes register every socket so
    ev.data.fd = fd;
    lab::check(::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl");
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const bool quiet = args.flag("--quiet");
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(notes_port), SOCK_STREAM);
    const lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    const int on = 1;  // SO_REUSEADDR, as the notes set it: restart despite TIME_WAIT (lab 10)
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), notes_backlog), "listen");
    const lab::Fd ep(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
    watch(ep.get(), listener.get());
    lab::announce_ready(listener.get());

    std::map<int, std::pair<lab::Fd, std::string>> conns;  // fd -> the socket and its address
    std::array<epoll_event, max_events> events{};
    std::array<char, notes_bufsize> buf{};
    for (;;) {
        const int n = ::epoll_wait(ep.get(), events.data(), max_events, -1);
        if (n < 0 && errno == EINTR) {
            continue;  // Python retries this itself (PEP 475)
        }
        for (const epoll_event& e : std::span(events).first(lab::check(n, "epoll_wait"))) {
            const int fd = e.data.fd;
            // [slide:bugs]
            if (fd == listener.get()) {
                lab::Address peer;  // bug 2: one accept per event, however many are queued
                lab::Fd conn(lab::check(::accept(listener.get(), peer.get(), &peer.len), "accept"));
                const int cfd = conn.get();
                lab::say("accepted ", lab::to_string(peer));
                watch(ep.get(), cfd);
                conns[cfd] = {std::move(conn), lab::to_string(peer)};
            } else if (e.events == EPOLLIN) {  // bug 3: a mask compared whole, not bit by bit
                auto& [conn, who] = conns.at(fd);
                // bug 1: one recv() per event on a blocking socket, whatever is left unread
                const ssize_t got = lab::check(::recv(fd, buf.data(), buf.size(), 0), "recv");
                // [/slide:bugs]
                if (got > 0) {
                    const std::string_view data(buf.data(), static_cast<std::size_t>(got));
                    if (!quiet) {
                        lab::say("recv ", got, " bytes from ", who, ": ",
                                 lab::quoted(data.substr(0, shown_bytes)),
                                 data.size() > shown_bytes ? "..." : "");
                    }
                    lab::write_all(fd, data);
                } else {
                    lab::check(::epoll_ctl(ep.get(), EPOLL_CTL_DEL, fd, nullptr), "epoll_ctl");
                    lab::say("closed ", who, ": recv returned 0 (its FIN); closing ours");
                    conns.erase(fd);
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
