// time_wait_server.cpp: a TCP server that serves one client, closes, and exits. Start it
//                       again at once on the same port to meet TIME_WAIT and see what
//                       SO_REUSEADDR really permits.
// Notes: 2MSL问题 (and the SO_REUSEADDR comment in 单进程服务器)
// Usage: time_wait_server [--host H] [--port P] [--reuseaddr] [--reuseport]
//                         [--server-closes-first (default) | --client-closes-first]
// Try:   ./time_wait_server &   (echo hi; sleep 1) | nc -q1 127.0.0.1 8088   then at once
//        ./time_wait_server  (EADDRINUSE); with --reuseaddr on both runs the restart works.
// Observe: `ss -tano state time-wait` shows the entry on port 8088 with timer:(timewait,59sec): on
//          the server's side only when the server closed first. SO_REUSEADDR leaves it there.
// Simplifications: one client, one message (up to 1 KiB), then exit; no timeouts.
// See also: socket(7) SO_REUSEADDR / SO_REUSEPORT, tcp(7) tcp_fin_timeout; lab 09;
//           lab 11 (a real loop).
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // 2MSL问题 and 单进程服务器 bind 8088
constexpr std::array options{
    lab::Option{"--host", "H", "address to listen on (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to listen on (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--reuseaddr", "",
                "setsockopt(SO_REUSEADDR) before bind(): bind despite TIME_WAIT"},
    lab::Option{"--reuseport", "",
                "setsockopt(SO_REUSEPORT) before bind(): listeners may share the port"},
    lab::Option{"--server-closes-first", "",
                "reply, then close at once: the server is the active closer (default)"},
    lab::Option{"--client-closes-first", "",
                "reply, then wait for the client's FIN before closing"},
};
constexpr lab::Program program{
    "time_wait_server", "Serves one client, closes, exits: restart it to meet TIME_WAIT.", options};

void enable(int fd, int option, const char* name) {
    const int on = 1;
    lab::check(::setsockopt(fd, SOL_SOCKET, option, &on, sizeof on),
               std::string("setsockopt(") + name + ")");
}

// Bind (with the chosen options), serve one client, close and exit.
int serve(const lab::Args& args) {
    lab::exit_on_signals();
    if (args.flag("--server-closes-first") && args.flag("--client-closes-first"))
        throw lab::usage_error(
            "--server-closes-first and --client-closes-first exclude each other");
    const bool client_first = args.flag("--client-closes-first");
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);

    // The options count only if set before bind(). SO_REUSEADDR is also copied to every
    // accepted socket, and Linux lets a new bind pass a TIME_WAIT entry only if both sockets
    // had it set.
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    // SOLUTION: enable() SO_REUSEADDR if --reuseaddr, SO_REUSEPORT if --reuseport
    // [slide:options]
    if (args.flag("--reuseaddr"))
        enable(listener.get(), SO_REUSEADDR, "SO_REUSEADDR");
    if (args.flag("--reuseport"))
        enable(listener.get(), SO_REUSEPORT, "SO_REUSEPORT");
    // [/slide:options]
    // END
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), 5), "listen");
    lab::announce_ready(listener.get());

    // Serve exactly one client: one message in, one reply out.
    lab::Address from;
    lab::Fd conn(lab::check(::accept(listener.get(), from.get(), &from.len), "accept"));
    lab::say("accepted ", lab::to_string(from));
    std::array<char, 1024> buf{};
    const ssize_t n = lab::check(::recv(conn.get(), buf.data(), buf.size(), 0), "recv");
    lab::write_all(conn.get(), "served: " + std::string(buf.data(), static_cast<std::size_t>(n)));

    const std::string me = lab::to_string(lab::local_address(conn.get()));  // for the last line

    // Who sends the first FIN decides who waits in TIME_WAIT: the active closer, 60 s on Linux.
    // SOLUTION: --client-closes-first: recv() until 0 (its FIN), say so; then close conn
    // [slide:close-first]
    if (client_first) {
        for (ssize_t got = 1; got > 0;)
            got = lab::check(::recv(conn.get(), buf.data(), buf.size(), 0), "recv");
        lab::say("the client closed first (recv returned 0): TIME_WAIT will be on its side");
    }
    conn.reset();
    // [/slide:close-first]
    // END
    const std::string closed = client_first
                                   ? "closed " + me + " as the passive closer: no TIME_WAIT here"
                                   : "closed first: " + me + " now waits in TIME_WAIT for 60 s";
    lab::say(closed);
    // Closing the listener frees the port at once; only the connection's TIME_WAIT can remain.
    listener.reset();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
