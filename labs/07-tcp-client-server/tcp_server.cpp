// tcp_server.cpp: the five steps of a TCP server; replies "has recv:" + what one recv() got.
// Notes: TCP / 服务端
// Usage: tcp_server [--host H] [--port P] [--backlog N] [--clients N] [--hold]
// Try:   ./tcp_server &   then   ./tcp_client --message hello      (or: nc 127.0.0.1 8088)
// Observe: `./tcp_server --backlog 3 --hold` and 8 clients: `ss -ltn 'sport = :8088'` shows Recv-Q
//          4 (completed, waiting for accept) and Send-Q 3 (the backlog); the other 4 stay in
//          SYN-SENT.
// Simplifications: clients are served one after another; one reply per recv(), so the replies show
//          where recv() happened to cut the byte stream (that is the point, not a protocol).
// See also: listen(2) NOTES, accept(2), tcp(7); tcp_client.cpp;
//           next lab: tcp_chat_server.cpp (lab 08).
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;   // the notes' 服务端 binds 8088
constexpr int notes_backlog = 3;             // and calls listen(3)
constexpr long notes_clients = 1;            // and serves one client
constexpr std::size_t notes_bufsize = 1024;  // and recv(1024)
constexpr std::string_view ack = "has recv:";
constexpr std::array options{
    lab::Option{"--host", "H", "address to listen on (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to listen on (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--backlog", "N",
                "listen() backlog: completed connections allowed to wait for accept (default {})",
                notes_backlog},
    lab::Option{
        "--clients", "N",
        "serve N clients, one after another, then exit (default {}, as the notes; 0: forever)",
        notes_clients},
    lab::Option{"--hold", "",
                "hold off accept() until a line (Enter) arrives on stdin; EOF ends the server"},
};
constexpr lab::Program program{
    "tcp_server", "Accepts TCP clients one at a time and acknowledges every recv().", options};

// One client: every recv() gets one reply, until recv() returns 0 (the client's FIN).
void serve(const lab::Fd& conn, const std::string& who) {
    // SOLUTION: recv() up to 1024 bytes until 0; print each chunk, reply ack + chunk
    std::array<char, notes_bufsize> buf{};
    // [slide:serve]
    for (;;) {
        const ssize_t n =
            lab::check(::recv(conn.get(), buf.data(), buf.size(), 0), "recv from " + who);
        if (n == 0) {
            lab::say("client ", who, " closed its side (recv returned 0): closing ours");
            return;
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(n));
        lab::say("recv ", n, " bytes from ", who, ": ", lab::quoted(data));
        // One reply built whole, then sent with a loop: send() may take only part of it.
        lab::write_all(conn.get(), std::string(ack) + std::string(data));
    }
    // [/slide:serve]
    // END
}

// socket, bind, listen, then accept and serve clients one at a time.
int run_server(const lab::Args& args) {
    lab::exit_on_signals();
    const auto backlog = args.number<int>("--backlog", 0, 65535, notes_backlog);
    const auto clients = args.number<long>("--clients", 0, 1'000'000, notes_clients);

    // Steps 1-2: socket() and bind(): the address clients will connect to.
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));

    // Step 3: listen(). From now on the KERNEL completes handshakes and queues up to backlog+1
    // finished connections for accept(); more SYNs are dropped (the clients retry; not
    // refused).
    // [slide:listen]
    lab::check(::listen(listener.get(), backlog), "listen");
    // [/slide:listen]
    lab::announce_ready(listener.get());

    // --hold: do not call accept() yet, so the accept queue can be watched filling up.
    if (args.flag("--hold")) {
        lab::say("holding off accept(): backlog ", backlog, "; press Enter to start accepting");
        if (std::string line; !std::getline(std::cin, line)) {
            lab::say("stdin closed: exiting without accepting");
            return 0;
        }
    }

    // Step 4: accept() takes the oldest completed connection off the queue (it waits only if
    // the queue is empty). Step 5: recv()/send() on the new socket; the listener stays open.
    for (long served = 0; clients == 0 || served < clients; ++served) {
        // [slide:accept]
        lab::Address peer;
        lab::Fd conn(lab::check(::accept(listener.get(), peer.get(), &peer.len), "accept"));
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who, " on ", lab::to_string(lab::local_address(conn.get())));
        // [/slide:accept]
        // A client that resets (RST) ends its own session, not the server.
        try {
            serve(conn, who);
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e))
                throw;
            const std::string why = lab::errno_name(e.code().value());
            lab::say("client ", who, " is gone (", e.what(), " [", why, "]): dropped");
        }
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, run_server);
}
