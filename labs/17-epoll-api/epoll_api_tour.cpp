// epoll_api_tour.cpp: the seven steps of an epoll object's life, run on real sockets, each call
//                     printed with what the kernel answered (an fd, ok, or the errno's name).
// Notes: the epoll walkthrough, 原理图 (the seven steps) and 相关用法 (register,
//        unregister, poll, modify, fromfd, close), and its note on EPOLLET / "EPOLLLT"
// Usage: epoll_api_tour [--host H] [--timeout-ms T] [--hold]
// Try:   ./epoll_api_tour           then   ./epoll_api_tour --hold   and, at each hold line,
//        cat /proc/$(pgrep -n epoll_api_tour)/fdinfo/3   (one tfd: line per registered fd)
// Observe: strace -e trace=epoll_create,epoll_create1,epoll_ctl,epoll_wait ./epoll_api_tour
// Simplifications: both ends of every connection live in this one process, on loopback; a wait
//          that expects events uses a 1 s timeout so a slow machine does not change the story.
// See also: epoll(7) (Q&A 1-9), epoll_create(2), epoll_ctl(2), epoll_wait(2); tcp(7) SO_LINGER;
//           epoll_lt_echo.cpp (the loop of steps 3-5 as a server); lab 18 (edge-triggered).
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";
constexpr int idle_timeout_ms = 250;  // how long a wait that expects nothing waits
constexpr int ready_timeout_ms = 1000;
const std::string timeout_help = "epoll_wait timeout when nothing is ready, in ms (default " +
                                 std::to_string(idle_timeout_ms) + ")";
const std::string host_help =
    "loopback address for the tour's connections (default " + std::string(default_host) + ")";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--timeout-ms", "T", timeout_help},
    lab::Option{"--hold", "", "stop at each hold line until a line arrives on stdin (EOF: exit)"},
};
const lab::Program program{
    "epoll_api_tour", "Runs epoll's life cycle on real sockets and prints each answer.", options};

// A mask as hex and as names: "0x19 EPOLLIN|EPOLLERR|EPOLLHUP".
std::string shown(std::uint32_t mask) {
    constexpr std::array<std::pair<std::uint32_t, const char*>, 10> bits{{
        {EPOLLIN, "EPOLLIN"},
        {EPOLLPRI, "EPOLLPRI"},
        {EPOLLOUT, "EPOLLOUT"},
        {EPOLLERR, "EPOLLERR"},
        {EPOLLHUP, "EPOLLHUP"},
        {EPOLLRDHUP, "EPOLLRDHUP"},
        {EPOLLEXCLUSIVE, "EPOLLEXCLUSIVE"},
        {EPOLLWAKEUP, "EPOLLWAKEUP"},
        {EPOLLONESHOT, "EPOLLONESHOT"},
        {EPOLLET, "EPOLLET"},
    }};
    std::array<char, 16> hex{};
    std::snprintf(hex.data(), hex.size(), "0x%x", mask);
    std::string names;
    for (const auto& [bit, name] : bits) {
        if (mask & bit) {
            names += (names.empty() ? "" : "|") + std::string(name);
        }
    }
    return std::string(hex.data()) + " " + (names.empty() ? "none" : names);
}
// What a call returned: "ok" (or its value) or the errno's symbolic name.
std::string outcome(long rc, bool value = false) {
    if (rc == -1) {
        const char* name = ::strerrorname_np(errno);
        return name ? name : "E?";
    }
    return value ? std::to_string(rc) : "ok";
}

struct Tour {
    lab::Fd ep;
    lab::Fd listener;
    int idle_ms;
    bool hold;

    // epoll_ctl, raw; the line shows the operation, the fd and the kernel's answer.
    std::string ctl(int op, std::string_view what, int fd, std::uint32_t events = 0) const {
        epoll_event ev{};
        ev.events = events;
        ev.data.fd = fd;
        const int rc = ::epoll_ctl(ep.get(), op, fd, &ev);
        const std::string result = outcome(rc);
        const char* name = op == EPOLL_CTL_ADD ? "ADD" : op == EPOLL_CTL_MOD ? "MOD" : "DEL";
        const std::string mask = op == EPOLL_CTL_DEL ? "-" : shown(events);
        lab::say("ctl ", name, ' ', what, " fd ", fd, " events ", mask, " -> ", result);
        return result;
    }
    // epoll_wait, raw; prints how many events came and how long it took, then each event.
    std::vector<epoll_event> wait(std::string_view label, int timeout_ms) const {
        std::array<epoll_event, 8> events{};
        const auto t0 = std::chrono::steady_clock::now();
        const int n = lab::check(::epoll_wait(ep.get(), events.data(), events.size(), timeout_ms),
                                 "epoll_wait");
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - t0);
        lab::say("wait ", label, " timeout ", timeout_ms, " ms -> ", n, " events after ",
                 ms.count(), " ms");
        std::vector<epoll_event> got(events.begin(), events.begin() + n);
        for (const epoll_event& e : got) {
            lab::say("event fd ", e.data.fd, " mask ", shown(e.events));
        }
        return got;
    }
    // One wait of a trigger-mode demonstration, and how many events it brought.
    void trigger(std::string_view mode, std::string_view when, int timeout_ms) const {
        const std::string label = std::string(mode) + "-" + std::string(when);
        lab::say("trigger ", mode, ' ', when, " -> ", wait(label, timeout_ms).size(), " events");
    }
    // --hold: stop here so /proc/PID/fdinfo/EPFD can be read; EOF ends the tour with 0.
    void pause(std::string_view label) const {
        if (!hold) {
            return;
        }
        lab::say("hold ", label, ": epoll fd ", ep.get(), "; press Enter to go on");
        if (std::string line; !std::getline(std::cin, line)) {
            lab::say("stdin closed at hold ", label, ": exiting");
            std::exit(0);
        }
    }
    // A connected pair on loopback: {our end (accepted), the peer's end}.
    std::pair<lab::Fd, lab::Fd> connection() const {
        const lab::Address at = lab::local_address(listener.get());
        lab::Fd peer(lab::check(::socket(at.family(), SOCK_STREAM, 0), "socket"));
        lab::check(::connect(peer.get(), at.get(), at.len), "connect");
        lab::Fd ours(lab::check(::accept(listener.get(), nullptr, nullptr), "accept"));
        return {std::move(ours), std::move(peer)};
    }
};

void call(std::string_view what, long rc, bool value = false) {
    lab::say("call ", what, " -> ", outcome(rc, value));
}
void send_byte(const lab::Fd& fd, char c) {
    lab::check(::send(fd.get(), &c, 1, MSG_NOSIGNAL), "send");
}
// SO_LINGER {on, 0 s}: close() sends RST instead of FIN (tcp(7), socket(7)).
void reset(lab::Fd& fd) {
    const linger abort{1, 0};
    lab::check(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort), "SO_LINGER");
    fd.reset();
}

// Step 1. The size argument of epoll_create() is ignored (it only has to be > 0);
// epoll_create1(EPOLL_CLOEXEC) is the call to use: the fd is not inherited across exec.
lab::Fd create() {
    lab::say("step 1: create an epoll object");
    for (const int size : {0, 1, 100000}) {
        lab::Fd old(::epoll_create(size));
        lab::say("create epoll_create(", size, ") -> ",
                 old ? "fd " + std::to_string(old.get()) : outcome(-1));
    }
    lab::Fd ep(lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1"));
    const int flags = lab::check(::fcntl(ep.get(), F_GETFD), "fcntl(F_GETFD)");
    lab::say("create epoll_create1(EPOLL_CLOEXEC) -> fd ", ep.get(), " cloexec ",
             (flags & FD_CLOEXEC) ? 1 : 0);
    return ep;
}

// Step 2: ADD, and the errors ADD and DEL give for the wrong fd.
void register_fds(const Tour& t, const lab::Fd& ours, const lab::Fd& peer) {
    lab::say("step 2: tell it which events to watch on which fds");
    t.ctl(EPOLL_CTL_ADD, "listener", t.listener.get(), EPOLLIN);
    t.ctl(EPOLL_CTL_ADD, "listener", t.listener.get(), EPOLLIN);  // EEXIST: already registered
    t.ctl(EPOLL_CTL_ADD, "conn", ours.get(), EPOLLIN | EPOLLRDHUP);
    t.ctl(EPOLL_CTL_DEL, "unregistered", peer.get());  // ENOENT: never added
    char name[] = "/tmp/epoll_api_tour.XXXXXX";
    lab::Fd file(lab::check(::mkstemp(name), "mkstemp"));
    ::unlink(name);
    t.ctl(EPOLL_CTL_ADD, "regular-file", file.get(), EPOLLIN);  // EPERM: files are always ready
    t.pause("registered");
}

// Steps 3 and 4: wait (the timeout is in milliseconds), then act on what was reported.
void wait_and_act(const Tour& t, const lab::Fd& ours, const lab::Fd& peer) {
    lab::say("step 3: ask which fds had events (epoll_wait)");
    t.wait("idle", t.idle_ms);
    std::array<epoll_event, 1> one{};
    call("epoll_wait(socket fd " + std::to_string(peer.get()) + ")",
         ::epoll_wait(peer.get(), one.data(), 1, 0));  // what fromfd() of a socket leads to
    send_byte(peer, 'x');
    t.wait("data", ready_timeout_ms);
    lab::say("step 4: act on them");
    char byte = 0;
    call("recv(conn fd " + std::to_string(ours.get()) + ")", ::recv(ours.get(), &byte, 1, 0), true);
}

// Step 5: MOD and DEL. Then the trigger modes: level (the default; there is no EPOLLLT flag),
// EPOLLET (again when new data comes) and EPOLLONESHOT (once, until MOD re-arms it).
void modify(const Tour& t, const lab::Fd& ours, const lab::Fd& peer) {
    lab::say("step 5: change what it watches (MOD, DEL)");
    t.ctl(EPOLL_CTL_MOD, "conn", ours.get(), EPOLLIN | EPOLLOUT | EPOLLRDHUP);
    t.pause("modified");
    t.wait("writable", ready_timeout_ms);
    t.ctl(EPOLL_CTL_DEL, "listener", t.listener.get());
    t.pause("unregistered");
    lab::say("note level-triggered is the default (no EPOLLET bit); there is no EPOLLLT flag");
    send_byte(peer, 'y');  // one byte that stays unread through the three modes
    t.ctl(EPOLL_CTL_MOD, "conn", ours.get(), EPOLLIN);
    t.trigger("lt", "first", ready_timeout_ms);
    t.trigger("lt", "again-unread", ready_timeout_ms);  // level: reported while data waits
    t.ctl(EPOLL_CTL_MOD, "conn", ours.get(), EPOLLIN | EPOLLET);  // MOD re-checks: one edge now
    t.trigger("et", "first", ready_timeout_ms);
    t.trigger("et", "again-unread", t.idle_ms);  // edge: not again for the same data
    send_byte(peer, 'z');
    t.trigger("et", "new-data", ready_timeout_ms);  // ...but again for new data: not "once"
    t.ctl(EPOLL_CTL_MOD, "conn", ours.get(), EPOLLIN | EPOLLONESHOT);
    t.trigger("oneshot", "first", ready_timeout_ms);
    send_byte(peer, 'w');
    t.trigger("oneshot", "new-data", t.idle_ms);  // disarmed after one event
    t.pause("oneshot-disarmed");
    t.ctl(EPOLL_CTL_MOD, "conn", ours.get(), EPOLLIN | EPOLLONESHOT);
    t.trigger("oneshot", "after-mod", ready_timeout_ms);
    t.ctl(EPOLL_CTL_DEL, "conn", ours.get());
}

// Step 6: the loop of steps 3-5 meets the ends of connections. One fresh connection per case:
// what the peer does, which mask we registered, which mask epoll_wait reports, what recv says.
void masks(const Tour& t) {
    lab::say("step 6: repeat steps 3 to 5: what the masks mean");
    using Action = std::function<void(lab::Fd & ours, lab::Fd & peer)>;
    const auto peer_closes = [](lab::Fd&, lab::Fd& peer) {
        peer.reset();
    };
    const auto peer_half_closes = [](lab::Fd&, lab::Fd& peer) {
        lab::check(::shutdown(peer.get(), SHUT_WR), "shutdown");
    };
    const auto both_shut = [&t](lab::Fd& ours, lab::Fd& peer) {
        lab::check(::shutdown(peer.get(), SHUT_WR), "shutdown");
        t.wait("fin-arrived", ready_timeout_ms);
        lab::check(::shutdown(ours.get(), SHUT_WR), "shutdown");
    };
    const auto peer_resets = [](lab::Fd&, lab::Fd& peer) {
        reset(peer);
    };
    // [slide:masks]
    const std::array<std::tuple<const char*, std::uint32_t, Action>, 6> cases{{
        {"fin", EPOLLIN, peer_closes},
        {"fin-rdhup", EPOLLIN | EPOLLRDHUP, peer_closes},
        {"half-close", EPOLLIN | EPOLLRDHUP, peer_half_closes},
        {"both-shut", EPOLLIN | EPOLLRDHUP, both_shut},
        {"rst", EPOLLIN, peer_resets},
        {"rst-unasked", 0, peer_resets},  // ERR and HUP come even when not asked for
    }};
    // [/slide:masks]
    for (const auto& [name, registered, action] : cases) {
        auto [ours, peer] = t.connection();
        t.ctl(EPOLL_CTL_ADD, "conn", ours.get(), registered);
        action(ours, peer);
        const auto got = t.wait(name, ready_timeout_ms);
        char byte = 0;
        const std::string rc = outcome(::recv(ours.get(), &byte, 1, MSG_DONTWAIT), true);
        lab::say("mask ", name, ": registered ", shown(registered), ", reported ",
                 shown(got.empty() ? 0 : got[0].events), ", recv -> ", rc);
        t.ctl(EPOLL_CTL_DEL, "conn", ours.get());
    }
    const lab::Address at = lab::local_address(t.listener.get());
    lab::Fd fresh(lab::check(::socket(at.family(), SOCK_STREAM, 0), "socket"));
    t.ctl(EPOLL_CTL_ADD, "never-connected", fresh.get(), EPOLLIN);
    const auto got = t.wait("never-connected", ready_timeout_ms);
    lab::say("mask never-connected: registered ", shown(EPOLLIN), ", reported ",
             shown(got.empty() ? 0 : got[0].events), ", recv -> ",
             outcome(::recv(fresh.get(), nullptr, 0, MSG_DONTWAIT), true));
    t.ctl(EPOLL_CTL_DEL, "never-connected", fresh.get());
}

// Step 7. epoll keeps a registration while the open file lives, not while the fd number does:
// close() of one of two fds (a dup, a fork child's copy) leaves it registered (epoll(7) Q6).
void destroy(Tour& t) {
    lab::say("step 7: destroy the epoll object");
    auto [ours, peer] = t.connection();
    t.ctl(EPOLL_CTL_ADD, "conn", ours.get(), EPOLLIN);
    lab::Fd copy(lab::check(::dup(ours.get()), "dup"));
    call("dup(conn fd " + std::to_string(ours.get()) + ")", copy.get(), true);
    const int closed = ours.release();
    call("close(conn fd " + std::to_string(closed) + ")", ::close(closed));
    t.pause("closed-original");
    send_byte(peer, 'v');
    t.wait("after-close", ready_timeout_ms);  // still reported, under the closed fd's number
    t.ctl(EPOLL_CTL_DEL, "closed", closed);   // EBADF: that fd number is closed
    t.ctl(EPOLL_CTL_DEL, "dup", copy.get());  // ENOENT: the dup was never added
    const int last = copy.release();
    call("close(dup fd " + std::to_string(last) + ")", ::close(last));
    t.pause("closed-dup");
    t.wait("after-last-close", t.idle_ms);

    // The right order with a dup alive: unregister, then close.
    auto [conn, other] = t.connection();
    t.ctl(EPOLL_CTL_ADD, "conn", conn.get(), EPOLLIN);
    lab::Fd held(lab::check(::dup(conn.get()), "dup"));
    // SOLUTION: EPOLL_CTL_DEL conn (with t.ctl, named "conn"), then close it; held stays open
    t.ctl(EPOLL_CTL_DEL, "conn", conn.get());
    conn.reset();
    // END
    t.pause("deleted-then-closed");
    held.reset();

    const int epfd = t.ep.release();
    call("close(epoll fd " + std::to_string(epfd) + ")", ::close(epfd));
    std::array<epoll_event, 1> none{};
    call("epoll_wait(closed epoll fd)", ::epoll_wait(epfd, none.data(), 1, 0));
    lab::say("done: the epoll object is gone");
}

int tour(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here = lab::resolve(args.get("--host", default_host), 0, SOCK_STREAM);
    Tour t{create(), lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket")),
           args.number<int>("--timeout-ms", 0, 60'000, idle_timeout_ms), args.flag("--hold")};
    lab::check(::bind(t.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(t.listener.get(), 16), "listen");

    auto [ours, peer] = t.connection();
    register_fds(t, ours, peer);
    wait_and_act(t, ours, peer);
    modify(t, ours, peer);
    masks(t);
    destroy(t);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, tour);
}
