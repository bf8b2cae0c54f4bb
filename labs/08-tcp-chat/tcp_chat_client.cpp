// tcp_chat_client.cpp: the client side of the lock-step chat: send a line, wait for the reply line.
// Notes: TCP / 多线程聊天 (the notes show only the server; this is the client it expects)
// Usage: tcp_chat_client [--host H] [--port P] [--unframed]
// Try:   ./tcp_chat_server &   then   ./tcp_chat_client      (type a line, wait for the answer)
// Observe: press Enter on an empty line: it goes out as 1 byte ("\n") and the chat goes on. With
//          --unframed (the notes' way: send the text alone, one recv() = one message) the empty
//          line is a send() of 0 bytes: nothing leaves, and both sides wait for each other forever.
// Simplifications: strictly one line out, one line back; it cannot show a line that arrives while
//          you type. tcp_chat_duplex.cpp can.
// See also: send(2), recv(2); line_reader.hpp; tcp_chat_server.cpp.
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>

#include "lab.hpp"
#include "line_reader.hpp"

namespace {

constexpr std::uint16_t notes_port = 7788;  // the port of the notes' TCP 多线程聊天 server
constexpr std::array options{
    lab::Option{"--host", "H", "server address (default {})", lab::default_host},
    lab::Option{"--port", "P", "server port (default {})", notes_port},
    lab::Option{"--unframed", "",
                "as the notes: send lines without '\\n', take one recv() as one message"},
};
constexpr lab::Program program{
    "tcp_chat_client", "Chats with tcp_chat_server in turns: a line out, a line back.", options};

// The notes' framing, or rather none: one send() of the bare text and one recv() as "the reply".
// An empty line is send(fd, "", 0): it returns 0 and puts nothing on the wire.
bool unframed_turn(int fd, const std::string& line, std::string& reply) {
    const ssize_t sent = lab::check(::send(fd, line.data(), line.size(), MSG_NOSIGNAL), "send");
    const std::string_view why =
        sent == 0 ? ": nothing goes on the wire, so the server never gets its turn" : "";
    lab::say("sent ", sent, " bytes", why);
    std::array<char, 1024> buf{};
    const ssize_t n = lab::check(::recv(fd, buf.data(), buf.size(), 0), "recv");
    reply.assign(buf.data(), static_cast<std::size_t>(n));
    return n > 0;
}

// Connect, then take turns with the server: a line out, a line back.
int chat(const lab::Args& args) {
    lab::exit_on_signals();
    const bool unframed = args.flag("--unframed");
    const lab::Address server =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_STREAM);

    // connect() completes as soon as the kernel has done the handshake, even if the server is
    // busy with another client and will not accept() us for a while.
    lab::Fd s(lab::check(::socket(server.family(), SOCK_STREAM, 0), "socket"));
    lab::check(::connect(s.get(), server.get(), server.len), "connect " + lab::to_string(server));
    lab::say("connected to ", lab::to_string(server), " from ",
             lab::to_string(lab::local_address(s.get())),
             "; your turn: type a line (end with EOF, Ctrl-D)");

    // Taking turns: our line (with its '\n' so the server knows where it ends), then its reply.
    LineReader from_server(s.get());  // this connection's own buffer
    for (std::string line, reply; std::getline(std::cin, line);) {
        bool open = false;
        if (unframed)
            open = unframed_turn(s.get(), line, reply);
        else {
            lab::write_all(s.get(), line + "\n");
            open = from_server.read_line(reply);
        }
        if (!open) {
            lab::say("the server closed the connection (recv returned 0)");
            return 0;
        }
        lab::say("recv: \"", reply, "\"");
    }

    // EOF on stdin: closing sends our FIN; the server's recv() returns 0 and it accepts
    // the next client.
    lab::say("stdin closed: closing the connection");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, chat);
}
