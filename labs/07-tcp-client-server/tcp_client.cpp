// tcp_client.cpp: connect to a TCP server, send each line, print every recv() of the reply.
// Notes: TCP / 客户端
// Usage: tcp_client [--host H] [--port P] [--message TEXT] [--one-send]
// Try:   ./tcp_server &   then   ./tcp_client --message hello      (or: nc -l 127.0.0.1 8088 &)
// Observe: `strace -e trace=network ./tcp_client --message hi` shows socket, connect, sendto,
//          recvfrom, and no bind(): connect() picks an ephemeral source port, printed as "from".
// Simplifications: the protocol is "a line out, a line back": the client reads until the reply's
//          newline (TCP keeps no message boundaries, so it cannot read "one message").
// See also: connect(2), send(2) (short counts), tcp(7); tcp_server.cpp; next lab: tcp_chat_client.cpp.
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <iostream>
#include <stdexcept>
#include <string>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the notes' 客户端 connects to port 8088
constexpr std::array options{
    lab::Option{"--host", "H", "server address (default 127.0.0.1)"},
    lab::Option{"--port", "P", "server port (default 8088)"},
    lab::Option{"--message", "TEXT", "send TEXT as one line, print the reply and exit (default: each stdin line)"},
    lab::Option{"--one-send", "", "call send() once per line, as the notes do, and say how many bytes it dropped"},
};
constexpr lab::Program program{"tcp_client", "Sends lines to a TCP server and prints every recv() of each reply.", options};

// send() may take fewer bytes than asked (a signal, a full buffer on a non-blocking socket,
// SO_SNDTIMEO): the notes' single send() would lose the rest. Loop until every byte is queued.
void send_all(int fd, std::string_view data) {
    // BEGIN SOLUTION: loop until send() has taken every byte (retry EINTR); print each short send and the summary line
    const std::size_t total = data.size();
    int calls = 0;
    // [slide:send-all]
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        ++calls;
        if (n < 0 && errno == EINTR) continue;
        lab::check(n, "send");
        if (static_cast<std::size_t>(n) < data.size())
            lab::say("short send: send() took ", n, " of ", data.size(), " bytes; sending the rest");
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    // [/slide:send-all]
    lab::say("sent ", total, " bytes in ", calls, " send() call", calls == 1 ? "" : "s");
    // STUB (void)fd, (void)data;
    // STUB throw std::runtime_error("send_all is not written yet");
    // END SOLUTION
}

// The notes' way: one send() and hope. Whatever it did not take is silently never sent.
void send_once(int fd, std::string_view data) {
    const ssize_t n = lab::check(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), "send");
    lab::say("one send() took ", n, " of ", data.size(), " bytes", static_cast<std::size_t>(n) < data.size()
             ? "; the other " + std::to_string(data.size() - static_cast<std::size_t>(n)) + " bytes are never sent" : "");
}

// Read until the reply's newline, printing what each recv() returned: one line may take several.
void read_reply(int fd) {
    std::array<char, 65536> buf{};
    for (bool done = false; !done;) {
        const ssize_t n = lab::check(::recv(fd, buf.data(), buf.size(), 0), "recv");
        if (n == 0) throw std::runtime_error("the server closed the connection before its reply ended (recv returned 0)");
        const std::string_view got(buf.data(), static_cast<std::size_t>(n));
        lab::say("recv ", n, " bytes: ", lab::quoted(got.size() > 200 ? got.substr(0, 200) : got), got.size() > 200 ? " ..." : "");
        done = got.find('\n') != std::string_view::npos;
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, [](const lab::Args& args) {
        lab::exit_on_signals();
        const lab::Address server = lab::resolve(args.get("--host", "127.0.0.1"), args.port(notes_port), SOCK_STREAM);

        // connect() returns once the three-way handshake is done: the server need not have called
        // accept() yet (the kernel answers). No bind(): the kernel picks our port.
        lab::Fd s(lab::check(::socket(server.family(), SOCK_STREAM, 0), "socket"));
        lab::check(::connect(s.get(), server.get(), server.len), "connect " + lab::to_string(server));
        lab::say("connected to ", lab::to_string(server), " from ", lab::to_string(lab::local_address(s.get())));

        // One line out, its reply back: --message once, else every stdin line until EOF.
        const auto send_line = [&](const std::string& line) {
            if (args.flag("--one-send")) send_once(s.get(), line + "\n");
            else send_all(s.get(), line + "\n");
            read_reply(s.get());
        };
        if (auto text = args.value("--message")) send_line(std::string(*text));
        else for (std::string line; std::getline(std::cin, line);) send_line(line);

        // Closing sends our FIN; the server's recv() returns 0 and it closes too.
        lab::say("closing the connection");
        return 0;
    });
}
