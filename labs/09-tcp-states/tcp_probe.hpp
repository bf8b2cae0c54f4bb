// tcp_probe.hpp: how lab 09 watches both ends of a connection, and holds segments back.
// Plumbing for tcp_states.cpp, not the lesson: a private network namespace with only lo, the
// nft tool to drop chosen segments on their way in, an end's state from getsockopt(TCP_INFO)
// (tcp(7)) or from its row in /proc/net/tcp (proc(5)), the printing of one settled step, the
// command line and the loop that runs each scenario in a fresh namespace.
#pragma once
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "lab.hpp"

namespace probe {

// numbered as in include/net/tcp_states.h
inline constexpr std::array<const char*, 13> state_names{
    "?",      "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "SYN_RECV"};

// tcp_states' command line.
inline constexpr std::uint16_t notes_port = 8088;  // the port of the notes' TCP sections
inline constexpr std::array options{
    lab::Option{"--scenario", "NAME",
                "client-closes-first, server-closes-first, simultaneous-close, "
                "unread-data-reset, dup-close, half-close, syn-sent, syn-recv, or all (default)"},
    lab::Option{"--host", "H", "loopback address of the server, 127.0.0.1 (default) or ::1"},
    lab::Option{"--port", "P",
                "server port inside the private namespace (default {}; 0: the kernel picks)",
                notes_port},
};
inline constexpr lab::Program program{
    "tcp_states", "Shows both ends' TCP states, step by step, in each scenario.", options};

// nft matches for probe::hold(): which of an end's segments the namespace drops for a while.
inline const std::string fin_only = "tcp flags & fin == fin";
inline const std::string any_segment = "";

// A fresh network namespace with only lo, up, and an empty nftables chain on its input path.
// Not root? Become root of a new user namespace first (as `unshare -rn` does).
inline void private_loopback() {
    if (::geteuid() != 0) {
        const auto uid = std::to_string(::geteuid()), gid = std::to_string(::getegid());
        lab::check(::unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
        std::ofstream("/proc/self/setgroups") << "deny";
        std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
        std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
    }
    lab::check(::unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
    lab::Fd s(lab::check(::socket(AF_INET, SOCK_DGRAM, 0), "socket"));
    ifreq lo{};
    std::strcpy(lo.ifr_name, "lo");
    lab::check(::ioctl(s.get(), SIOCGIFFLAGS, &lo), "ioctl(SIOCGIFFLAGS, lo)");
    lo.ifr_flags |= IFF_UP;
    lab::check(::ioctl(s.get(), SIOCSIFFLAGS, &lo), "ioctl(SIOCSIFFLAGS, lo up)");
}

// Run one nft command (the nftables tool; Debian package `nftables`) in this namespace.
inline void nft(const std::string& command) {
    const pid_t child = lab::check(::fork(), "fork");
    if (child == 0) {
        ::execlp("nft", "nft", command.c_str(), nullptr);
        ::execl("/usr/sbin/nft", "nft", command.c_str(), nullptr);
        ::_exit(127);
    }
    int status = 0;
    lab::check(::waitpid(child, &status, 0), "waitpid(nft)");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("nft " + command +
                                 ": failed (is the nftables package installed?)");
}
inline void hold(std::uint16_t from_port, const std::string& what) {
    nft("add rule inet socklab held tcp sport " + std::to_string(from_port) + " " + what + " drop");
}
inline void release() {
    nft("flush chain inet socklab held");
}

// The state in this namespace's /proc/net/tcp or tcp6 of the socket with these ports, if any.
// Rows: "slot local-hex-address:port remote-hex-address:port state ...", the numbers in hex.
inline std::optional<std::string> proc_state(std::uint16_t local_port, std::uint16_t remote_port) {
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line, slot, local, remote;
        for (std::getline(in, line); in >> slot >> local >> remote >> line; std::getline(in, line))
            if (std::stoul(local.substr(local.find(':') + 1), nullptr, 16) == local_port &&
                std::stoul(remote.substr(remote.find(':') + 1), nullptr, 16) == remote_port)
                return state_names.at(std::stoul(line, nullptr, 16));
    }
    return std::nullopt;
}

// The two ends of one connection as the scenarios drive them; ports say which /proc row is whose.
struct End {
    lab::Fd fd;
    std::uint16_t local = 0, remote = 0;
};
struct Connection {
    lab::Fd listener;
    End client, server;
    bool accepted = false;
    std::string last;
};

// What the kernel says about a socket we hold (tcp(7)): tcpi_state, numbered as in tcp_states.h.
inline std::string info_state(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    lab::check(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len), "getsockopt(TCP_INFO)");
    return state_names.at(info.tcpi_state);
}
// The state of one end: TCP_INFO while it has an fd and a connection, else its
// /proc/net/tcp row.
inline std::string state_of(const End& end) {
    if (end.fd && info_state(end.fd.get()) != "CLOSED")
        return info_state(end.fd.get());
    return proc_state(end.local, end.remote).value_or("CLOSED");
}
// "what -> n ENAME (strerror)" for a call's return value n and its errno err (when n < 0).
inline void say_outcome(std::string_view what, ssize_t n, int err) {
    const std::string name = n < 0 ? lab::errno_name(err) : "";
    const std::string text = n < 0 ? ::strerror(err) : "no error";
    lab::say(what, " -> ", n, ' ', name, " (", text, ')');
}
// One end seen both ways: its fd's TCP_INFO and its /proc/net/tcp row.
inline void say_both_views(const End& end, const std::string& note) {
    lab::say("client TCP_INFO -> ", info_state(end.fd.get()), ", /proc/net/tcp -> ",
             proc_state(end.local, end.remote).value_or("nothing"), note);
}
inline std::string row(const Connection& c) {
    std::string server = state_of(c.server);
    // no server end yet: show the listener
    if (!c.accepted && server == "CLOSED")
        server = "LISTEN";
    std::string line = "client " + state_of(c.client);
    return line + std::string(20 - line.size(), ' ') + "| server " + server;
}

// Print both states once they are settled: wait (up to `patience`) for a change, then for two equal
// readings in a row (at most 10 s). A retransmission after a release takes 0.2 s or more;
// other steps take microseconds.
using ms = std::chrono::milliseconds;
inline constexpr ms quick{500}, no_change{0}, retransmission{10'000};
inline void step(Connection& c, const std::string& what, ms patience = quick) {
    for (ms waited{0}; row(c) == c.last && waited < patience; waited += ms(10))
        std::this_thread::sleep_for(ms(10));
    std::string seen = row(c);
    for (int tries = 0; seen != c.last && tries < 300; ++tries, seen = row(c)) {
        c.last = seen;
        std::this_thread::sleep_for(ms(30));
    }
    const std::string pad(c.last.size() < 41 ? 41 - c.last.size() : 1, ' ');
    lab::say(c.last, pad, what);
}

inline std::uint16_t port_of(int fd) {
    return lab::host_port(lab::local_address(fd)).second;
}

// One more client, connected and never accepted: with backlog 0 the accept queue is now full.
inline lab::Fd fill_accept_queue(const Connection& c) {
    const lab::Address server = lab::local_address(c.listener.get());
    lab::Fd first(lab::check(::socket(server.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::connect(first.get(), server.get(), server.len), "connect");
    return first;
}

// A listener (bound, listen(backlog)) and an unconnected client, in a private network
// namespace.
inline Connection prepare(const std::string& host, std::uint16_t port, int backlog) {
    private_loopback();
    nft("add table inet socklab; add chain inet socklab held { type filter hook input priority 0; "
        "}");
    const lab::Address here = lab::resolve(host, port, SOCK_STREAM);
    Connection c{
        lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket")), {}, {}, false, {}};
    lab::check(::bind(c.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(c.listener.get(), backlog), "listen");
    c.client.fd = lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    c.client.remote = c.server.local = port_of(c.listener.get());
    step(c, "listen() on port " + std::to_string(c.server.local) +
                "; the client socket is not connected");
    return c;
}
// The client connects (non-blocking when !wait: the SYN may go unanswered); ports are noted.
// connect(): wait for the handshake, or start it and return at once (non-blocking).
enum class Connect { wait, in_background };
inline void connect_client(Connection& c, Connect how) {
    if (how == Connect::in_background)
        lab::check(::fcntl(c.client.fd.get(), F_SETFL, O_NONBLOCK), "fcntl(O_NONBLOCK)");
    const lab::Address server = lab::local_address(c.listener.get());
    if (::connect(c.client.fd.get(), server.get(), server.len) < 0 && errno != EINPROGRESS)
        lab::check(-1, "connect");
    c.client.local = c.server.remote = port_of(c.client.fd.get());
}
inline void accept_server(Connection& c) {
    c.server.fd = lab::Fd(lab::check(::accept(c.listener.get(), nullptr, nullptr), "accept"));
    c.accepted = true;
}

// A scenario of tcp_states: its name, its steps, the listener's backlog, whether it starts from an
// open connection (connect() and accept() done) or from a bare listener.
enum class Start { connected, listening };
struct Scenario {
    std::string_view name;
    void (*run)(Connection&);
    int backlog = 8;
    Start start = Start::connected;
};
// Run the scenario named `wanted` (or all), each in a fresh namespace: nothing left from the last
// one (TIME_WAIT!) can interfere.
inline int run_scenarios(std::span<const Scenario> scenarios, const std::string& wanted,
                         const std::string& host, std::uint16_t port) {
    bool found = false;
    for (const Scenario& s : scenarios) {
        if (wanted != "all" && wanted != s.name)
            continue;
        found = true;
        lab::say("scenario ", s.name);
        Connection c = prepare(host, port, s.backlog);
        if (s.start == Start::connected) {
            connect_client(c, Connect::wait);
            accept_server(c);
            step(c, "connect() and accept(): the three-way handshake is done");
        }
        s.run(c);
    }
    if (!found)
        throw lab::usage_error("--scenario: no scenario named '" + wanted + "'");
    return 0;
}

}  // namespace probe
