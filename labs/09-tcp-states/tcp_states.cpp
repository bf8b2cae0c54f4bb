// tcp_states.cpp: TCP connections driven through open/close scenarios; both ends' states per step.
// Notes: 十种状态
// Usage: tcp_states [--scenario NAME|all] [--host H] [--port P]
// Try:   ./tcp_states --scenario simultaneous-close      (./tcp_states --help lists the scenarios)
// Observe: eleven states, from getsockopt(TCP_INFO) or /proc/net/tcp; only the active closer waits.
// Simplifications: both ends in this one process; each scenario in a private network namespace
//          (only lo) where nftables holds segments back; plumbing and CLI live in tcp_probe.hpp.
// See also: tcp(7) TCP_INFO, TCP_DEFER_ACCEPT; RFC 793 3.2; include/net/tcp_states.h; lab 10.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <string_view>

#include "lab.hpp"
#include "tcp_probe.hpp"

namespace {

using probe::Connection, probe::End, probe::Start, probe::step, probe::no_change, probe::quick;
using probe::retransmission, probe::fin_only, probe::any_segment, probe::program, probe::notes_port;

void close_end(End& end) {
    lab::check(::close(end.fd.release()), "close");  // close(2) raw; the Fd gives its fd up
}

// One peer closes, then the other. Held-back segments make FIN_WAIT1 and LAST_ACK visible.
enum class Closer { client, server };
template <Closer who>
void orderly_close(Connection& c) {
    constexpr bool client = who == Closer::client;
    End& active = client ? c.client : c.server;
    End& passive = client ? c.server : c.client;
    const std::string one = client ? "client" : "server", other = client ? "server" : "client";
    probe::hold(active.local, fin_only);
    close_end(active);
    step(c, one + " close(): FIN sent; held back on its way, so " + one + " waits for its ACK");
    probe::release();
    step(c, "the FIN, retransmitted, gets through: " + other + " ACKs it", retransmission);
    probe::hold(active.local, any_segment);
    close_end(passive);
    step(c, other + " close(): its FIN reaches " + one + "; " + one + "'s last ACK is held back");
    probe::release();
    step(c, other + " retransmits its FIN; only " + one + " stays in TIME_WAIT", retransmission);
}

// Both close before either FIN is ACKed: the server's FIN is held back, the client's overtakes it.
void simultaneous_close(Connection& c) {
    // SOLUTION: hold the server's FIN; close server, then client; release it; step() each
    // [slide:simultaneous]
    probe::hold(c.server.local, fin_only);
    close_end(c.server);
    step(c, "server close(): its FIN is held back on its way");
    close_end(c.client);
    step(c, "client close(): FIN arrives at a server waiting for its own FIN's ACK");
    probe::release();
    step(c, "the server's FIN gets through: both closed actively, both wait", retransmission);
    // [/slide:simultaneous]
    // END
}

void unread_data_reset(Connection& c) {
    // [slide:unread-reset]
    lab::write_all(c.client.fd.get(), "unread");
    step(c, "client sends 6 bytes; the server does not read them", no_change);
    close_end(c.server);
    step(c, "server close() with unread data: RST instead of FIN");
    char byte = 0;
    const ssize_t n = ::recv(c.client.fd.get(), &byte, 1, 0);
    probe::say_outcome("client recv()", n, errno);
    // [/slide:unread-reset]
}

void half_close(Connection& c) {
    lab::check(::shutdown(c.client.fd.get(), SHUT_WR), "shutdown(SHUT_WR)");
    step(c, "client shutdown(SHUT_WR): FIN sent, the client can still receive");
    std::array<char, 64> buf{};
    const auto eof = lab::check(::recv(c.server.fd.get(), buf.data(), buf.size(), 0), "recv");
    lab::say("server recv() -> ", eof, " (end of the client's data)");
    lab::write_all(c.server.fd.get(), "still here");
    const auto n = lab::check(::recv(c.client.fd.get(), buf.data(), buf.size(), 0), "recv");
    lab::say("client recv() -> ", n, " bytes \"", std::string_view(buf.data(), n),
             "\" (a half-closed socket receives)");
    close_end(c.server);
    step(c, "server close(): its FIN puts the client's end, fd still open, in TIME_WAIT");
    probe::say_both_views(c.client, " (TIME_WAIT is a separate object)");
    close_end(c.client);
    step(c, "client close(): the TIME_WAIT entry outlives the fd", no_change);
}

// The FIN goes when the last fd closes (close(2)): closing one of two dup(2) copies sends nothing.
void dup_close(Connection& c) {
    const int copy = lab::check(::dup(c.client.fd.get()), "dup");
    close_end(c.client);
    step(c, "client close() of one of two fds (dup): no FIN, the socket is still open", quick);
    lab::check(::close(copy), "close");
    step(c, "client close() of the last fd: now the FIN goes");
}

// Opening. Backlog 0 holds one connection: a second client's SYN is dropped while it is full.
void syn_sent(Connection& c) {
    const lab::Fd first = probe::fill_accept_queue(c);
    probe::connect_client(c, probe::Connect::in_background);
    step(c, "another client fills the accept queue (backlog 0); connect(): SYN dropped");
    lab::Fd taken(lab::check(::accept(c.listener.get(), nullptr, nullptr), "accept"));
    step(c, "server accept()s the other client; the retransmitted SYN gets in", retransmission);
}

void syn_recv(Connection& c) {
    // SOLUTION: set TCP_DEFER_ACCEPT (5 s) on the listener: half-open until data arrives
    const int secs = 5;
    lab::check(::setsockopt(c.listener.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs),
               "setsockopt(TCP_DEFER_ACCEPT)");
    // END
    probe::connect_client(c, probe::Connect::wait);
    step(c, "connect() returns; TCP_DEFER_ACCEPT: the server keeps its end until data");
    lab::write_all(c.client.fd.get(), "hello");
    step(c, "client sends data: the server's end is complete");
    probe::accept_server(c);
    step(c, "accept() returns it", no_change);
}

constexpr std::array<probe::Scenario, 8> scenarios{{
    {.name = "client-closes-first", .run = orderly_close<Closer::client>},
    {.name = "server-closes-first", .run = orderly_close<Closer::server>},
    {.name = "simultaneous-close", .run = simultaneous_close},
    {.name = "unread-data-reset", .run = unread_data_reset},
    {.name = "dup-close", .run = dup_close},
    {.name = "half-close", .run = half_close},
    {.name = "syn-sent", .run = syn_sent, .backlog = 0, .start = Start::listening},
    {.name = "syn-recv", .run = syn_recv, .start = Start::listening},
}};

// Run the chosen scenario (or all), each in a fresh network namespace.
int show_states(const lab::Args& args) {
    lab::exit_on_signals();
    const std::string wanted = args.get("--scenario", "all");
    const std::string host = args.get("--host", lab::default_host);
    return probe::run_scenarios(scenarios, wanted, host, args.port(notes_port));
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, show_states);
}
