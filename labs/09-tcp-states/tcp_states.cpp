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
//          That plumbing (namespace, nft, reading and printing states, the socket set-up taught in
//          lab 07) is in tcp_probe.hpp; this file is the scenarios.
// See also: tcp(7) TCP_INFO, TCP_DEFER_ACCEPT; RFC 793 3.2; include/net/tcp_states.h; lab 10.
#include <netinet/tcp.h>

#include <array>

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

using probe::Connection, probe::End, probe::step, probe::no_change, probe::retransmission;

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

// Both close before either FIN is ACKed: hold the server's FIN back so the client's FIN overtakes it.
void simultaneous_close(Connection& c) {
    // BEGIN SOLUTION: hold back the server's FIN; close the server, then the client; release the FIN (a step() after each)
    // [slide:simultaneous]
    probe::hold(c.server.local, "tcp flags & fin == fin");
    c.server.fd.reset();
    step(c, "server close(): its FIN is held back on its way");
    c.client.fd.reset();
    step(c, "client close(): FIN arrives at a server waiting for its own FIN's ACK");
    probe::release();
    step(c, "the server's FIN gets through: both closed actively, both wait", retransmission);
    // [/slide:simultaneous]
    // STUB (void)c;
    // STUB throw std::runtime_error("simultaneous_close is not written yet");
    // END SOLUTION
}

void unread_data_reset(Connection& c) {
    // [slide:unread-reset]
    lab::write_all(c.client.fd.get(), "unread");
    step(c, "client sends 6 bytes; the server does not read them", no_change);
    c.server.fd.reset();
    step(c, "server close() with unread data: RST instead of FIN");
    char byte = 0;
    const ssize_t n = ::recv(c.client.fd.get(), &byte, 1, 0);
    const int err = errno;
    lab::say("client recv() -> ", n, ' ', n < 0 ? ::strerrorname_np(err) : "", " (", n < 0 ? ::strerror(err) : "no error", ')');
    // [/slide:unread-reset]
}

void half_close(Connection& c) {
    // BEGIN SOLUTION: close only the client's sending direction: its FIN goes, its socket can still receive
    lab::check(::shutdown(c.client.fd.get(), SHUT_WR), "shutdown(SHUT_WR)");
    // STUB throw std::runtime_error("half_close: the client's half-close is not written yet");
    // END SOLUTION
    step(c, "client shutdown(SHUT_WR): FIN sent, the client can still receive");
    std::array<char, 64> buf{};
    lab::say("server recv() -> ", lab::check(::recv(c.server.fd.get(), buf.data(), buf.size(), 0), "recv"), " (end of the client's data)");
    lab::write_all(c.server.fd.get(), "still here");
    const auto n = lab::check(::recv(c.client.fd.get(), buf.data(), buf.size(), 0), "recv");
    lab::say("client recv() -> ", n, " bytes \"", std::string_view(buf.data(), n), "\" (a half-closed socket receives)");
    c.server.fd.reset();
    step(c, "server close(): its FIN puts the client's end, fd still open, in TIME_WAIT");
    lab::say("client TCP_INFO -> ", probe::info_state(c.client.fd.get()), ", /proc/net/tcp -> ",
             probe::proc_state(c.client.local, c.client.remote).value_or("nothing"), " (TIME_WAIT is a separate object)");
    c.client.fd.reset();
    step(c, "client close(): the TIME_WAIT entry outlives the fd", no_change);
}

// Opening. Backlog 0 holds one connection: a second client's SYN is dropped while it is full.
void syn_sent(Connection& c) {
    const lab::Address server = lab::local_address(c.listener.get());
    lab::Fd first(lab::check(::socket(server.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::connect(first.get(), server.get(), server.len), "connect");
    probe::connect_client(c, false);
    step(c, "another client fills the accept queue (backlog 0); connect(): SYN dropped");
    lab::Fd taken(lab::check(::accept(c.listener.get(), nullptr, nullptr), "accept"));
    step(c, "server accept()s the other client; the retransmitted SYN gets in", retransmission);
}

void syn_recv(Connection& c) {
    // BEGIN SOLUTION: set TCP_DEFER_ACCEPT (5 s) on the listener: its end stays half-open until data arrives
    const int seconds = 5;  // TCP_DEFER_ACCEPT: accept() only once data came (or the timeout ran out)
    lab::check(::setsockopt(c.listener.get(), IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds), "setsockopt(TCP_DEFER_ACCEPT)");
    // END SOLUTION
    probe::connect_client(c, true);
    step(c, "connect() returns; TCP_DEFER_ACCEPT: the server keeps its end until data");
    lab::write_all(c.client.fd.get(), "hello");
    step(c, "client sends data: the server's end is complete");
    probe::accept_server(c);
    step(c, "accept() returns it", no_change);
}

struct Scenario { std::string_view name; int backlog; bool opened; void (*run)(Connection&); };
constexpr std::array<Scenario, 7> scenarios{{
    {"client-closes-first", 8, true, [](Connection& c) { orderly_close(c, true); }},
    {"server-closes-first", 8, true, [](Connection& c) { orderly_close(c, false); }},
    {"simultaneous-close", 8, true, simultaneous_close},
    {"unread-data-reset", 8, true, unread_data_reset},
    {"half-close", 8, true, half_close},
    {"syn-sent", 0, false, syn_sent},
    {"syn-recv", 8, false, syn_recv},
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
            Connection c = probe::prepare(host, port, s.backlog);
            if (s.opened) {
                probe::connect_client(c, true);
                probe::accept_server(c);
                step(c, "connect() and accept(): the three-way handshake is done");
            }
            s.run(c);
        }
        if (!found) throw lab::usage_error("--scenario: no scenario named '" + wanted + "'");
        return 0;
    });
}
