// tcp_states.cpp: drive real TCP connections through opening and closing scenarios and print, after
//                 every step, the state of both ends as the kernel reports it.
// Notes: 十种状态
// Usage: tcp_states [--scenario NAME|all] [--host H] [--port P]
// Try:   ./tcp_states --scenario simultaneous-close      (./tcp_states --help lists the scenarios)
// Observe: live ends are read with getsockopt(TCP_INFO); ends without an fd (closed, TIME_WAIT, not
//          yet accepted) from /proc/net/tcp. Eleven states appear; only the active closer waits.
// Simplifications: both ends live in this one process. Each scenario runs in a private network
//          namespace (only lo, nothing leaves the machine), where an nftables rule holds back
//          chosen segments so that the short-lived states (FIN_WAIT1, CLOSING, LAST_ACK) last.
// See also: tcp(7) TCP_INFO, TCP_DEFER_ACCEPT; RFC 793 3.2; include/net/tcp_states.h; lab 10.
#include <fcntl.h>
#include <netinet/tcp.h>

#include <array>
#include <chrono>
#include <thread>

#include "lab.hpp"
#include "tcp_probe.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the port of the notes' TCP sections
constexpr std::array options{
    lab::Option{"--scenario", "NAME", "client-closes-first, server-closes-first, simultaneous-close, "
                                      "unread-data-reset, half-close, syn-sent, syn-recv, or all (default)"},
    lab::Option{"--host", "H", "loopback address of the server, 127.0.0.1 (default) or ::1"},
    lab::Option{"--port", "P", "server port inside the private namespace (default 8088; 0: the kernel picks)"},
};
constexpr lab::Program program{"tcp_states", "Shows both ends' TCP states, step by step, in each scenario.", options};

struct End { lab::Fd fd; std::uint16_t local = 0, remote = 0; };
struct Connection { lab::Fd listener; End client, server; bool accepted = false; std::string last; };
using ms = std::chrono::milliseconds;

std::uint16_t port_of(int fd) { return lab::host_port(lab::local_address(fd)).second; }

// What the kernel says about a socket we hold (tcp(7)): tcpi_state, numbered as in tcp_states.h.
std::string info_state(int fd) {
    tcp_info info{};
    socklen_t len = sizeof info;
    lab::check(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len), "getsockopt(TCP_INFO)");
    return probe::state_names.at(info.tcpi_state);
}
// The state of one end: TCP_INFO while it has an fd and a connection, else its row in /proc/net/tcp.
std::string state_of(const End& end) {
    if (end.fd && info_state(end.fd.get()) != "CLOSED") return info_state(end.fd.get());
    return probe::proc_state(end.local, end.remote).value_or("CLOSED");
}
std::string row(const Connection& c) {
    std::string server = state_of(c.server);
    if (!c.accepted && server == "CLOSED") server = "LISTEN";  // no server end yet: show the listener
    std::string line = "client " + state_of(c.client);
    return line + std::string(20 - line.size(), ' ') + "| server " + server;
}

// Print both states once they are settled: wait (up to `patience`) for a change, then for two equal
// readings in a row. A retransmission after a release takes 0.2 s or more; other steps take microseconds.
constexpr ms quick{500}, no_change{0}, retransmission{10'000};
void step(Connection& c, const std::string& what, ms patience = quick) {
    for (ms waited{0}; row(c) == c.last && waited < patience; waited += ms(10)) std::this_thread::sleep_for(ms(10));
    for (std::string seen; (seen = row(c)) != c.last;) { c.last = seen; std::this_thread::sleep_for(ms(30)); }
    lab::say(c.last, std::string(c.last.size() < 41 ? 41 - c.last.size() : 1, ' '), what);
}

// A listener and an unconnected client, in a private namespace of their own.
Connection prepare(const std::string& host, std::uint16_t port, int backlog, bool defer_accept) {
    probe::private_loopback();
    probe::nft("add table inet socklab; add chain inet socklab held { type filter hook input priority 0; }");
    const lab::Address here = lab::resolve(host, port, SOCK_STREAM);
    Connection c{lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket")), {}, {}, false, {}};
    const int seconds = 5;  // TCP_DEFER_ACCEPT: accept() only once data came (or the timeout ran out)
    if (defer_accept) lab::check(::setsockopt(c.listener.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds), "setsockopt(TCP_DEFER_ACCEPT)");
    lab::check(::bind(c.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(c.listener.get(), backlog), "listen");
    c.client.fd = lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    c.client.remote = c.server.local = port_of(c.listener.get());
    step(c, "listen() on port " + std::to_string(c.server.local) + "; the client socket is not connected");
    return c;
}
void connect_client(Connection& c, bool wait) {
    if (!wait) lab::check(::fcntl(c.client.fd.get(), F_SETFL, O_NONBLOCK), "fcntl(O_NONBLOCK)");
    const lab::Address server = lab::local_address(c.listener.get());
    if (::connect(c.client.fd.get(), server.get(), server.len) < 0 && errno != EINPROGRESS) lab::check(-1, "connect");
    c.client.local = c.server.remote = port_of(c.client.fd.get());
}
void accept_server(Connection& c) {
    c.server.fd = lab::Fd(lab::check(::accept(c.listener.get(), nullptr, nullptr), "accept"));
    c.accepted = true;
}

// One peer closes, then the other. Held-back segments make FIN_WAIT1 and LAST_ACK visible.
void orderly_close(Connection& c, bool client_first) {
    End& first = client_first ? c.client : c.server;
    End& second = client_first ? c.server : c.client;
    const std::string a = client_first ? "client" : "server", b = client_first ? "server" : "client";
    probe::hold(first.local, "tcp flags & fin == fin");
    first.fd.reset();
    step(c, a + " close(): FIN sent; held back on its way, so " + a + " waits for its ACK");
    probe::release();
    step(c, "FIN retransmitted, gets through: " + b + " ACKs it (CLOSE_WAIT before any recv())", retransmission);
    probe::hold(first.local, "");
    second.fd.reset();
    step(c, b + " close(): its FIN reaches " + a + "; " + a + "'s last ACK is held back");
    probe::release();
    step(c, b + " retransmits its FIN, " + a + " ACKs again: only " + a + " stays in TIME_WAIT", retransmission);
}

void simultaneous_close(Connection& c) {
    probe::hold(c.server.local, "tcp flags & fin == fin");
    c.server.fd.reset();
    step(c, "server close(): its FIN is held back on its way");
    c.client.fd.reset();
    step(c, "client close(): FIN arrives at a server waiting for its own FIN's ACK");
    probe::release();
    step(c, "the server's FIN gets through: both closed actively, both wait", retransmission);
}

void unread_data_reset(Connection& c) {
    lab::write_all(c.client.fd.get(), "unread");
    step(c, "client sends 6 bytes; the server does not read them", no_change);
    c.server.fd.reset();
    step(c, "server close() with unread data: RST instead of FIN");
    char byte = 0;
    const ssize_t n = ::recv(c.client.fd.get(), &byte, 1, 0);
    const int err = errno;
    lab::say("client recv() -> ", n, ' ', n < 0 ? ::strerrorname_np(err) : "", " (", n < 0 ? ::strerror(err) : "no error", ')');
}

void half_close(Connection& c) {
    lab::check(::shutdown(c.client.fd.get(), SHUT_WR), "shutdown(SHUT_WR)");
    step(c, "client shutdown(SHUT_WR): FIN sent, the client can still receive");
    std::array<char, 64> buf{};
    lab::say("server recv() -> ", lab::check(::recv(c.server.fd.get(), buf.data(), buf.size(), 0), "recv"), " (end of the client's data)");
    lab::write_all(c.server.fd.get(), "still here");
    const auto n = lab::check(::recv(c.client.fd.get(), buf.data(), buf.size(), 0), "recv");
    lab::say("client recv() -> ", n, " bytes \"", std::string_view(buf.data(), n), "\" (a half-closed socket receives)");
    c.server.fd.reset();
    step(c, "server close(): its FIN puts the client's end, fd still open, in TIME_WAIT");
    lab::say("client TCP_INFO -> ", info_state(c.client.fd.get()), ", /proc/net/tcp -> ",
             probe::proc_state(c.client.local, c.client.remote).value_or("nothing"), " (TIME_WAIT is a separate object)");
    c.client.fd.reset();
    step(c, "client close(): the TIME_WAIT entry outlives the fd", no_change);
}

// Opening. Backlog 0 holds one connection: a second client's SYN is dropped while it is full.
void syn_sent(Connection& c) {
    const lab::Address server = lab::local_address(c.listener.get());
    lab::Fd first(lab::check(::socket(server.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::connect(first.get(), server.get(), server.len), "connect");
    connect_client(c, false);
    step(c, "another client fills the accept queue (backlog 0); connect(): SYN dropped");
    lab::Fd taken(lab::check(::accept(c.listener.get(), nullptr, nullptr), "accept"));
    step(c, "server accept()s the other client; the retransmitted SYN gets in", retransmission);
}

void syn_recv(Connection& c) {
    connect_client(c, true);
    step(c, "connect() returns; TCP_DEFER_ACCEPT: the server keeps its end until data");
    lab::write_all(c.client.fd.get(), "hello");
    step(c, "client sends data: the server's end is complete");
    accept_server(c);
    step(c, "accept() returns it", no_change);
}

struct Scenario { std::string_view name; int backlog; bool defer, opened; void (*run)(Connection&); };
constexpr std::array<Scenario, 7> scenarios{{
    {"client-closes-first", 8, false, true, [](Connection& c) { orderly_close(c, true); }},
    {"server-closes-first", 8, false, true, [](Connection& c) { orderly_close(c, false); }},
    {"simultaneous-close", 8, false, true, simultaneous_close},
    {"unread-data-reset", 8, false, true, unread_data_reset},
    {"half-close", 8, false, true, half_close},
    {"syn-sent", 0, false, false, syn_sent},
    {"syn-recv", 8, true, false, syn_recv},
}};

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, [](const lab::Args& args) {
        lab::exit_on_signals();
        const std::string wanted = args.get("--scenario", "all"), host = args.get("--host", "127.0.0.1");
        const std::uint16_t port = args.port(notes_port);
        bool found = false;
        for (const Scenario& s : scenarios) {
            if (wanted != "all" && wanted != s.name) continue;
            found = true;
            // Each scenario gets a fresh namespace: nothing left from the last one (TIME_WAIT!) interferes.
            lab::say("scenario ", s.name);
            Connection c = prepare(host, port, s.backlog, s.defer);
            if (s.opened) {
                connect_client(c, true);
                accept_server(c);
                step(c, "connect() and accept(): the three-way handshake is done");
            }
            s.run(c);
        }
        if (!found) throw lab::usage_error("--scenario: no scenario named '" + wanted + "'");
        return 0;
    });
}
