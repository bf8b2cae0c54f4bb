// echo_nonblock.cpp: a TCP echo server in one thread, without select or poll: every socket is
// non-blocking, and a loop asks each one in turn "anything for me?" (accept, recv, send). EAGAIN
// means "not now"; any other error ends that client only. Idle, the loop asks millions of times a
// second and burns a core; --sleep-us trades that CPU for latency.
// Notes: 单进程服务器改进 / 非阻塞模式
// Usage: echo_nonblock [--host H] [--port P] [--quiet] [--sleep-us N] [--show-flags]
//                      [--plain-accept] [--notes-except-pass]
// Try:   ./echo_nonblock &   nc 127.0.0.1 8088   and watch `top -p $(pgrep -x echo_nonblock)`
// Observe: `pidstat -u -p $(pgrep -x echo_nonblock) 1` shows ~100 %CPU with no client at all;
//          with --sleep-us 1000 it drops near 0, and each echo waits up to 1 ms longer.
// Simplifications: one pass over the clients per loop turn, a vector scanned in order; an echo
//          not yet sent is kept and that client is not read until it is gone (no unbounded buffer).
// See also: fcntl(2) O_NONBLOCK, accept(2) NOTES (flags are not inherited), recv(2) EAGAIN,
//          UNP 16.2; next lab: echo_select.cpp (lab 15) sleeps in the kernel until a socket is
//          ready.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "echo.hpp"
#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the notes' 非阻塞模式 binds 8088
constexpr int notes_backlog = 200;          // and calls listen(200)
constexpr std::size_t bufsize = 16384;
constexpr std::array options{
    lab::Option{"--host", "H", "address to listen on (default 127.0.0.1)"},
    lab::Option{"--port", "P", "port to listen on (default 8088; 0: the kernel picks)"},
    lab::Option{"--quiet", "", "do not log each receive (accepts and closes still are)"},
    lab::Option{"--sleep-us", "N",
                "sleep N microseconds after each pass (default 0: spin, as the notes)"},
    lab::Option{"--show-flags", "",
                "print whether O_NONBLOCK is set on the listener and each client"},
    lab::Option{"--plain-accept", "", "the bug: accept() instead of accept4(SOCK_NONBLOCK)"},
    lab::Option{"--notes-except-pass", "", "the notes' bug: ignore every error, not only EAGAIN"},
};
constexpr lab::Program program{
    "echo_nonblock", "A TCP echo server: one thread polling non-blocking sockets.", options};

struct Client {
    lab::Fd conn;
    std::string who;
    std::string unsent;  // echo bytes the client's socket had no room for yet
};

// The call failed only because it would have to wait: the one errno a polling loop expects.
bool would_block(ssize_t rc) {
    return rc < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void show_flags(int fd, std::string_view what) {
    const int flags = lab::check(::fcntl(fd, F_GETFL), "fcntl(F_GETFL)");
    lab::say("flags fd ", fd, " ", what, ": O_NONBLOCK ", (flags & O_NONBLOCK) ? "on" : "off");
}

// One look at one client: echo what is unsent, else recv what arrived. false: the client is done.
bool serve_once(Client& c, std::span<char> buf, bool quiet) {
    if (c.unsent.empty()) {
        // [slide:poll-recv]
        const ssize_t n = ::recv(c.conn.get(), buf.data(), buf.size(), 0);
        if (would_block(n)) {
            return true;  // nothing yet: ask again next pass
        }
        // [/slide:poll-recv]
        lab::check(n, "recv");
        if (n == 0) {
            lab::say("closed ", c.who, ": recv returned 0 (its FIN); closing ours");
            return false;
        }
        c.unsent.assign(buf.data(), static_cast<std::size_t>(n));
        if (!quiet) {
            lab::say("recv ", n, " bytes from ", c.who, ": ", lab::preview(c.unsent));
        }
    }
    const ssize_t sent = ::send(c.conn.get(), c.unsent.data(), c.unsent.size(), MSG_NOSIGNAL);
    if (would_block(sent)) {
        return true;  // its receive window is full: keep the bytes, try again next pass
    }
    c.unsent.erase(0, static_cast<std::size_t>(lab::check(sent, "send")));
    return true;
}

// Out of fds (EMFILE): the connection stays queued and accept4() fails on every pass. Shed it with
// the spare fd: free it, accept the client, close the client (it sees EOF), take the spare back.
void refuse_one(int listener, lab::Fd& spare) {
    spare.reset();
    lab::Address peer;
    if (lab::Fd shed(::accept(listener, peer.get(), &peer.len)); shed) {
        lab::say("refused ", lab::to_string(peer), ": out of fds [EMFILE]: closed it");
    }  // closed here, before the spare is taken back
    spare.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const bool quiet = args.flag("--quiet");
    const bool notes_pass = args.flag("--notes-except-pass");
    const bool show = args.flag("--show-flags");
    const auto sleep_us = args.number<useconds_t>("--sleep-us", 0, 1'000'000, 0);
    // --plain-accept: a blocking client socket, so a recv() on it stops the whole loop.
    const int accept_flags = args.flag("--plain-accept") ? 0 : SOCK_NONBLOCK;

    const auto here =
        lab::resolve(args.get("--host", "127.0.0.1"), args.port(notes_port), SOCK_STREAM);
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    const int on = 1;
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "SO_REUSEADDR");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), notes_backlog), "listen");
    // The listener must not block either: accept() with nobody waiting returns EAGAIN.
    // [slide:nonblock-listener]
    const int flags = lab::check(::fcntl(listener.get(), F_GETFL), "fcntl(F_GETFL)");
    lab::check(::fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK), "fcntl(F_SETFL)");
    // [/slide:nonblock-listener]
    lab::Fd spare(lab::check(::open("/dev/null", O_RDONLY | O_CLOEXEC), "open /dev/null"));
    if (show) {
        show_flags(listener.get(), "listener");
    }
    lab::announce_ready(listener.get());

    std::vector<Client> clients;
    std::vector<char> buf(bufsize);  // one receive buffer for every client: one is read at a time
    for (;;) {
        // SOLUTION: one pass: accept4 (EMFILE: refuse_one), then serve_once() every client
        lab::Address peer;
        // [slide:accept4]
        const int fd = ::accept4(listener.get(), peer.get(), &peer.len, accept_flags);
        if (fd >= 0) {
            lab::set_nodelay(fd);  // each echo leaves at once (lab 19)
            clients.push_back(Client{lab::Fd(fd), lab::to_string(peer), {}});
            lab::say("accepted ", clients.back().who);
            if (show) {
                show_flags(fd, "client " + clients.back().who);
            }
            // [/slide:accept4]
        } else if (!would_block(fd) && !notes_pass) {
            if (errno == EMFILE || errno == ENFILE) {
                refuse_one(listener.get(), spare);
            } else if (errno != ECONNABORTED && errno != EINTR) {
                lab::check(fd, "accept4");  // the listener itself is broken: give up
            }
        }
        for (auto it = clients.begin(); it != clients.end();) {
            bool keep = true;
            try {
                keep = serve_once(*it, buf, quiet);
            } catch (const std::system_error& e) {
                // The notes' `except: pass` lands here too and carries on as if nothing happened.
                keep = notes_pass;
                if (!notes_pass) {
                    lab::say("dropped ", it->who, ": ", e.what(), " [",
                             ::strerrorname_np(e.code().value()), "]");
                }
            }
            it = keep ? it + 1 : clients.erase(it);
        }
        // END
        if (sleep_us != 0) {
            ::usleep(sleep_us);
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
