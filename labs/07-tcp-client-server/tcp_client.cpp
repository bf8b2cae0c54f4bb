// tcp_client.cpp: connect to a TCP server, send each line, print every recv() of the reply.
// Notes: TCP / 客户端
// Usage: tcp_client [--host H] [--port P] [--message TEXT] [--one-send]
// Try:   ./tcp_server &   then   ./tcp_client --message hello      (or: nc -l 127.0.0.1 8088 &)
// Observe: `strace -e trace=network ./tcp_client --message hi` shows socket, connect, sendto,
//          recvfrom, and no bind(): connect() picks an ephemeral source port, printed as "from".
// Simplifications: the protocol is "a line out, a line back": the client reads until the reply's
//          newline (TCP keeps no message boundaries, so it cannot read "one message").
// See also: getaddrinfo(3), connect(2), send(2) (short counts), tcp(7), ipv6(7); tcp_server.cpp;
//           next lab: tcp_chat_client.cpp.
#include <netdb.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

#include "lab.hpp"

namespace {

constexpr std::size_t shown_bytes = 200;    // of each recv() in the log
constexpr std::uint16_t notes_port = 8088;  // the notes' 客户端 connects to port 8088
constexpr std::array options{
    lab::Option{"--host", "H", "server address (default {})", lab::default_host},
    lab::Option{"--port", "P", "server port (default {})", notes_port},
    lab::Option{"--message", "TEXT",
                "send TEXT as one line, print the reply and exit (default: each stdin line)"},
    lab::Option{"--one-send", "",
                "call send() once per line, as the notes do, and say how many bytes it dropped"},
};
constexpr lab::Program program{
    "tcp_client", "Sends lines to a TCP server and prints every recv() of each reply.", options};

// send() may take fewer bytes than asked (a signal, a full buffer on a non-blocking socket,
// SO_SNDTIMEO): the notes' single send() would lose the rest. Loop until every byte is queued.
void send_all(int fd, std::string_view data) {
    // SOLUTION: loop until send() took every byte (retry EINTR); print short sends, summary
    const std::size_t total = data.size();
    int calls = 0;
    // [slide:send-all]
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        ++calls;
        if (n < 0 && errno == EINTR)
            continue;
        lab::check(n, "send");
        if (static_cast<std::size_t>(n) < data.size())
            lab::say("short send: send() took ", n, " of ", data.size(),
                     " bytes; sending the rest");
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    // [/slide:send-all]
    const std::string_view plural = calls == 1 ? "" : "s";
    lab::say("sent ", total, " bytes in ", calls, " send() call", plural);
    // END
}

// The notes' way: one send() and hope. Whatever it did not take is silently never sent.
void send_once(int fd, std::string_view data) {
    const ssize_t n = lab::check(::send(fd, data.data(), data.size(), MSG_NOSIGNAL), "send");
    const std::size_t dropped = data.size() - static_cast<std::size_t>(n);
    const std::string lost =
        dropped > 0 ? "; the other " + std::to_string(dropped) + " bytes are never sent" : "";
    lab::say("one send() took ", n, " of ", data.size(), " bytes", lost);
}

// Read until the reply's newline, printing what each recv() returned: one line may take several.
void read_reply(int fd) {
    std::array<char, 65536> buf{};
    for (bool done = false; !done;) {
        const ssize_t n = lab::check(::recv(fd, buf.data(), buf.size(), 0), "recv");
        if (n == 0)
            throw std::runtime_error(
                "the server closed the connection before its reply ended (recv returned 0)");
        const std::string_view got(buf.data(), static_cast<std::size_t>(n));
        const bool long_chunk = got.size() > shown_bytes;
        const std::string shown = lab::quoted(got.substr(0, shown_bytes));
        lab::say("recv ", n, " bytes: ", shown, long_chunk ? " ..." : "");
        done = got.find('\n') != std::string_view::npos;
    }
}

// Connect, then send each line and print the server's reply.
// getaddrinfo(3) raw, once (later labs call lab::resolve, which keeps only the first answer):
// every address of HOST for a TCP socket, IPv4 and IPv6 (AF_UNSPEC), tried in the order given
// until one connects. "::ffff:127.0.0.1" is an IPv6 address too: an AF_INET6 socket that reaches
// an IPv4 listener through the IPv4-mapped range (ipv6(7)). UNP 11.12 (tcp_connect) does the same.
lab::Fd connect_to(const std::string& host, std::uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* first = nullptr;
    const std::string service = std::to_string(port);
    lab::check_gai(::getaddrinfo(host.c_str(), service.c_str(), &hints, &first),
                   "getaddrinfo " + host);
    // freeaddrinfo() the whole list on every way out, a throw included.
    const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(first, ::freeaddrinfo);

    std::system_error last(ENOENT, std::system_category(), "getaddrinfo " + host + ": no address");
    for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
        lab::Address to;
        std::memcpy(&to.storage, ai->ai_addr, ai->ai_addrlen);
        to.len = ai->ai_addrlen;
        // connect() returns once the three-way handshake is done: the server need not have
        // called accept() yet (the kernel answers). No bind(): the kernel picks our port.
        lab::Fd s(lab::check(::socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol), "socket"));
        if (::connect(s.get(), ai->ai_addr, ai->ai_addrlen) == 0) {
            lab::say("connected to ", lab::to_string(to), " from ",
                     lab::to_string(lab::local_address(s.get())));
            return s;
        }
        const int err = errno;
        last = std::system_error(err, std::system_category(), "connect " + lab::to_string(to));
        if (ai->ai_next != nullptr)
            lab::say("connect to ", lab::to_string(to), " failed (", lab::errno_name(err),
                     "): trying the next address");
    }
    throw last;
}

int talk(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Fd s = connect_to(args.get("--host", lab::default_host), args.port(notes_port));

    // One line out, its reply back: --message once, else every stdin line until EOF.
    const auto send_line = [&](const std::string& line) {
        if (args.flag("--one-send"))
            send_once(s.get(), line + "\n");
        else
            send_all(s.get(), line + "\n");
        read_reply(s.get());
    };
    if (auto text = args.value("--message"))
        send_line(std::string(*text));
    else
        for (std::string line; std::getline(std::cin, line);)
            send_line(line);

    // Closing sends our FIN; the server's recv() returns 0 and it closes too.
    lab::say("closing the connection");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, talk);
}
