// echo_iterative.cpp: an iterative TCP echo server. It accepts one client, sends every byte it
//                     receives straight back until the client's EOF, then accepts the next one.
// Notes: 服务器实现 / 单进程服务器
// Usage: echo_iterative [--host H] [--port P] [--quiet]
// Try:   ./echo_iterative &   nc 127.0.0.1 8088   and, in a second shell, another nc: it connects
// at
//        once, but its lines come back only when the first nc has ended (Ctrl-D).
// Observe: `ss -tn 'sport = :8088'` shows the second client ESTABLISHED while the first is served;
//          what it types sits in Recv-Q and is read by one recv() once its turn comes.
// Simplifications: one client at a time, no timeouts: an idle client blocks everyone else (the
//          lesson: head-of-line blocking); a reset client is dropped, any other error ends the
//          server.
// See also: accept(2), recv(2), socket(7) SO_REUSEADDR, UNP 4.11 (an iterative server);
//          lab 10 (TIME_WAIT); next: echo_fork.cpp (lab 12), a process per client.
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <string>
#include <string_view>
#include <system_error>

#include "echo.hpp"  // lab::preview: the log shows the first 64 bytes
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";
constexpr std::uint16_t notes_port = 8088;   // 单进程服务器 binds 8088
constexpr int notes_backlog = 5;             // and calls listen(5)
constexpr std::size_t notes_bufsize = 1024;  // and recv(1024)

const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::string port_help =
    "port to listen on (default " + std::to_string(notes_port) + "; 0: the kernel picks)";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
};
const lab::Program program{"echo_iterative",
                           "Echoes every byte back to one TCP client at a time, in turn.", options};

// One client, to its EOF: whatever recv() returns goes back whole before the next recv().
void echo(const lab::Fd& conn, const std::string& who, bool quiet) {
    // SOLUTION: recv() up to 1024 bytes until it returns 0; log each receive unless quiet;
    // send every byte back (lab::write_all)
    std::array<char, notes_bufsize> buf{};
    for (;;) {
        // [slide:echo]
        const ssize_t n = lab::check(::recv(conn.get(), buf.data(), buf.size(), 0), "recv");
        if (n == 0) {
            return;  // the client's FIN: it sends no more
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(n));
        if (!quiet) {
            lab::say("recv ", n, " bytes from ", who, ": ", lab::preview(data));
        }
        lab::write_all(conn.get(), data);  // send() may take less than asked: write_all loops
        // [/slide:echo]
    }
    // END
}

// socket, SO_REUSEADDR, bind, listen: the listening socket on `here`.
lab::Fd listen_on(const lab::Address& here) {
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    // SO_REUSEADDR, before bind(): a restarted server must be able to bind while connections of the
    // last run still wait in TIME_WAIT on this port (60 s, lab 10). It never lets two servers
    // listen on one port: a running server still makes bind() fail with EADDRINUSE.
    const int on = 1;
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), notes_backlog), "listen");
    return listener;
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const bool quiet = args.flag("--quiet");
    const std::string host = args.get("--host", default_host);
    const lab::Address here = lab::resolve(host, args.port(notes_port), SOCK_STREAM);
    const lab::Fd listener = listen_on(here);
    lab::announce_ready(listener.get());

    // One client at a time. While it is served, the kernel still completes the handshakes of
    // others (up to the backlog) and queues what they send: they wait, connected, for their turn.
    // SOLUTION: forever: accept() one client, log it, echo() it to its EOF, log the close; a
    // client that resets (lab::peer_gone) is logged as dropped
    // [slide:accept-loop]
    for (;;) {
        lab::Address peer;
        lab::Fd conn(lab::check(::accept(listener.get(), peer.get(), &peer.len), "accept"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who);
        // [/slide:accept-loop]
        try {
            echo(conn, who, quiet);
            lab::say("closed ", who, ": recv returned 0 (its FIN); closing ours");
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
            const char* name = ::strerrorname_np(e.code().value());
            lab::say("dropped ", who, ": ", e.what(), " [", name, "]");
        }
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
