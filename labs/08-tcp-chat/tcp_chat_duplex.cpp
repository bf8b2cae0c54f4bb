// tcp_chat_duplex.cpp: a full-duplex chat with two threads per side: one sends stdin lines, one
// prints what arrives. Stdin EOF sends FIN with shutdown(SHUT_WR); the other direction works on.
// Notes: TCP / 多线程聊天 (what its title promises: threads, both directions at once)
// Usage: tcp_chat_duplex [--listen] [--host H] [--port P]
// Try:   ./tcp_chat_duplex --listen   and, in another terminal,   ./tcp_chat_duplex
//        type on both sides at any time; press Ctrl-D on one side and keep typing on the other.
// Observe: after Ctrl-D on side A, `ss -tn 'sport = :7788 or dport = :7788'` shows A in FIN-WAIT-2
//          and B in CLOSE-WAIT: a half-closed connection that still carries B's lines to A.
// Simplifications: one peer only (--listen accepts one connection, then closes the listener); an
//          error in the receiving thread (a reset) ends the program with _Exit, not by waking
//          the sender.
// See also: shutdown(2), tcp(7), RFC 9293 3.6 (half-close); line_reader.hpp; tcp_chat_server.cpp.
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <ostream>
#include <string>
#include <thread>

#include "lab.hpp"
#include "line_reader.hpp"

namespace {

constexpr std::uint16_t notes_port = 7788;  // the port of the notes' TCP 多线程聊天
constexpr std::array options{
    lab::Option{
        "--listen", "",
        "wait for the peer: listen on H:P and accept one connection (default: connect to it)"},
    lab::Option{"--host", "H", "address to listen on or connect to (default {})",
                lab::default_host},
    lab::Option{"--port", "P", "port (default {}; with --listen, 0: the kernel picks)", notes_port},
};
constexpr lab::Program program{
    "tcp_chat_duplex", "A two-way chat: one thread sends stdin lines, one prints the peer's lines.",
    options};

// The connected socket: accept one peer (--listen), or connect to one.
lab::Fd open_connection(const lab::Args& args) {
    const lab::Address address =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);
    lab::Fd s(lab::check(::socket(address.family(), SOCK_STREAM, 0), "socket"));
    if (!args.flag("--listen")) {
        lab::check(::connect(s.get(), address.get(), address.len),
                   "connect " + lab::to_string(address));
        lab::say("connected to ", lab::to_string(address), " from ",
                 lab::to_string(lab::local_address(s.get())));
        return s;
    }
    lab::check(::bind(s.get(), address.get(), address.len), "bind " + lab::to_string(address));
    lab::check(::listen(s.get(), 1), "listen");
    lab::announce_ready(s.get());
    lab::Address peer;
    lab::Fd conn(lab::check(::accept(s.get(), peer.get(), &peer.len), "accept"));
    lab::say("accepted ", lab::to_string(peer));
    return conn;  // the listener closes here: one peer only
}

// Receiving thread: print every line until the peer's FIN.
void receive_lines(int fd) {
    LineReader from_peer(fd);
    for (std::string line; from_peer.read_line(line);)
        lab::say("recv: \"", line, "\"");
    lab::say("peer finished sending (recv returned 0); we can still send");
}

// Sending thread: every stdin line; at EOF, shutdown(SHUT_WR) sends FIN but keeps the socket
// open for reading. close() here would also end the other direction.
void send_lines(int fd) {
    // SOLUTION: send every stdin line with its '\n'; at EOF shutdown(SHUT_WR) and say so
    // [slide:half-close]
    for (std::string line; std::getline(std::cin, line);)
        lab::write_all(fd, line + "\n");
    lab::check(::shutdown(fd, SHUT_WR), "shutdown(SHUT_WR)");
    lab::say("stdin closed: sent FIN with shutdown(SHUT_WR); still receiving");
    // [/slide:half-close]
    // END
}

// Connect (or accept one peer), then send and receive at once, one thread each.
int chat(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Fd conn = open_connection(args);

    // Two threads, one per direction, so neither waits for the other: no turns. Each catches
    // its own exceptions (one escaping a std::thread would call std::terminate).
    std::exception_ptr receive_error, send_error;
    std::thread receiver([&] {
        try {
            receive_lines(conn.get());
        } catch (...) {
            receive_error = std::current_exception();
        }
    });
    std::thread sender([&] {
        try {
            send_lines(conn.get());
        } catch (...) {
            send_error = std::current_exception();
        }
    });

    // The receiving direction ends first or together: the peer's FIN, or an error such as a
    // reset. After a reset nothing more can be sent, but the sender may sit in getline() for
    // good (nothing wakes a thread blocked reading stdin): report the error and end at once.
    receiver.join();
    if (receive_error) {
        try {
            std::rethrow_exception(receive_error);
        } catch (const std::exception& e) {
            std::cerr << lab::error_message(program.name, e) << std::endl;
        }
        std::_Exit(1);
    }
    // After the peer's FIN we may still send: wait for our stdin's EOF (join() also makes
    // send_error safe to read here).
    sender.join();
    if (send_error)
        std::rethrow_exception(send_error);
    lab::say("both directions closed: exiting");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, chat);
}
