// tcp_chat_server.cpp: the notes' TCP "multi-threaded" chat as it really is: a serial, lock-step
// server. It talks with one client at a time, taking turns line by line (theirs, then yours).
// Notes: TCP / 多线程聊天
// Usage: tcp_chat_server [--host H] [--port P]
// Try:   ./tcp_chat_server   then, in two more terminals,   ./tcp_chat_client   (twice)
// Observe: the second client's connect() succeeds at once (`ss -tn 'sport = :7788'` shows it
//          ESTABLISHED, and `ss -ltn` Recv-Q 1), yet nobody reads its lines until the first leaves.
// Simplifications: no threads at all, exactly like the notes; one line in, one line out. For both
//          directions at once see tcp_chat_duplex.cpp; for serving many clients, labs 12-18.
// See also: recv(2) ("return value 0"), accept(2); line_reader.hpp; tcp_chat_client.cpp.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include "lab.hpp"
#include "line_reader.hpp"

namespace {

constexpr std::uint16_t notes_port = 7788;  // the notes' TCP 多线程聊天 binds 7788
constexpr int notes_backlog = 5;            // and calls listen(5)
constexpr std::array options{
    lab::Option{"--host", "H", "address to listen on (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to listen on (default {}; 0: the kernel picks)", notes_port},
};
constexpr lab::Program program{
    "tcp_chat_server", "A serial chat server: one client at a time, taking turns line by line.",
    options};

// Talk with one client until it leaves. False when our own stdin ends: time to exit.
bool chat_with(const lab::Fd& conn, const std::string& who) {
    LineReader from_client(conn.get());  // this connection's own buffer
    for (std::string line, reply;;) {
        // The client's turn. recv() returning 0 means its FIN: it closed, or shut down its
        // writing side.
        if (!from_client.read_line(line)) {
            const std::string_view where =
                from_client.unfinished().empty() ? "" : " in the middle of a line";
            lab::say("client ", who, " closed its side (recv returned 0)", where,
                     ": back to accept()");
            return true;
        }
        lab::say("recv: \"", line, "\"");

        // Our turn: one stdin line. Even an empty one goes out as "\n", so the client always
        // gets its turn back.
        lab::say("your turn: type a line");
        if (!std::getline(std::cin, reply)) {
            lab::say("stdin closed: closing ", who, " and exiting");
            return false;
        }
        lab::write_all(conn.get(), reply + "\n");
    }
}

// socket, bind, listen, then chat with one client after another.
int serve(const lab::Args& args) {
    lab::exit_on_signals();

    // socket, bind, listen: from here on the kernel completes every client's handshake alone.
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), notes_backlog), "listen");
    lab::announce_ready(listener.get());

    // One client after another. While we chat, nobody calls accept(): later clients are
    // connected (by the kernel) but wait, unserved, in the accept queue.
    // [slide:serial]
    for (;;) {
        lab::Address peer;
        lab::Fd conn(lab::check(::accept(listener.get(), peer.get(), &peer.len), "accept"));
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who, ": chatting with it; other clients wait until it leaves");
        // [/slide:serial]
        try {
            if (!chat_with(conn, who))
                return 0;
        } catch (const std::system_error& e) {
            // A reset (RST) ends this client's session, not the server.
            if (!lab::peer_gone(e))
                throw;
            const std::string why = lab::errno_name(e.code().value());
            lab::say("client ", who, " is gone (", e.what(), " [", why, "]): back to accept()");
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
