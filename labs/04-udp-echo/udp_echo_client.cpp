// udp_echo_client.cpp: send lines (or N bytes) to a UDP echo server and print each echo; never
//                      wait forever.
// Notes: echo服务器 (客户端)
// Usage: udp_echo_client [--host H] [--port P] [--timeout-ms T] [--connect] [--size N]
// Try:   ./udp_echo_server &   then   ./udp_echo_client      and with no server running:
//        ./udp_echo_client <<< hi     (times out)
//        ./udp_echo_client --connect <<< hi     (ECONNREFUSED)
// Observe: `strace -e trace=network` shows recvfrom returning EAGAIN when SO_RCVTIMEO expires. With
//          no server the kernel gets an ICMP port unreachable (`tshark -i lo icmp`), but only a
//          connected socket is told. --timeout-ms 0 waits forever, as the notes' client does.
// Simplifications: exit 1 at the first missing echo (no retries); unconnected, any sender's
//          datagram counts as the echo (a connected socket accepts only its peer's).
// See also: socket(7) SO_RCVTIMEO, udp(7), UNP 8.9 and 8.11 (connected UDP); udp_echo_server.cpp.
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "lab.hpp"

namespace {

constexpr int default_timeout_ms = 1000;    // the notes wait forever; one second is plenty here
constexpr std::uint16_t notes_port = 8088;  // the notes' client sends to localhost:8088
constexpr std::array options{
    lab::Option{"--host", "H", "server address (default {})", lab::default_host},
    lab::Option{"--port", "P", "server port (default {})", notes_port},
    lab::Option{"--timeout-ms", "T",
                "wait at most T ms for each echo (default {}; 0: forever, as the notes)",
                default_timeout_ms},
    lab::Option{"--connect", "",
                "connect() the socket first, so that ICMP errors (ECONNREFUSED) reach it"},
    lab::Option{"--size", "N",
                "send one datagram of N bytes (0..65507), check the echo is identical, exit"},
};
constexpr lab::Program program{
    "udp_echo_client", "Sends each stdin line to a UDP echo server and prints the echo.", options};

// Send one datagram and wait for one back. Connected: send/recv, and the kernel reports a closed
// port. Unconnected: sendto/recvfrom, and nothing reports it: the receive timeout is all we have.
std::string round_trip(const lab::Fd& s, const lab::Address& server, bool connected,
                       std::string_view payload, int timeout_ms) {
    // SOLUTION: send, receive one datagram; EAGAIN (timeout): throw "no echo within T ms"
    const std::string where = lab::to_string(server);
    if (connected)
        lab::check(::send(s.get(), payload.data(), payload.size(), 0),
                   "send to " + where + " (connected)");
    else
        lab::check(::sendto(s.get(), payload.data(), payload.size(), 0, server.get(), server.len),
                   "sendto " + where);

    std::vector<char> buf(65536);
    const ssize_t n = connected ? ::recv(s.get(), buf.data(), buf.size(), 0)
                                : ::recvfrom(s.get(), buf.data(), buf.size(), 0, nullptr, nullptr);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        throw std::runtime_error(
            "no echo within " + std::to_string(timeout_ms) + " ms from " + where +
            ": the datagram or its echo was lost, or no server is there" +
            (connected ? "" : " (an unconnected UDP socket is never told: try --connect)"));
    lab::check(n, connected ? "recv from " + where + " (connected)" : "recvfrom " + where);
    return std::string(buf.data(), static_cast<std::size_t>(n));
    // END
}

// Send each line (or one --size payload) and print the echo that comes back.
int echo_lines(const lab::Args& args) {
    lab::exit_on_signals();
    const int timeout_ms = args.number<int>("--timeout-ms", 0, 3'600'000, default_timeout_ms);
    const bool connected = args.flag("--connect");
    const lab::Address server =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);
    lab::Fd s(lab::check(::socket(server.family(), SOCK_DGRAM, 0), "socket"));

    // SO_RCVTIMEO bounds every receive: recv fails with EAGAIN instead of blocking forever.
    // (0 means no limit: the notes' client, stuck for good when one datagram is lost.)
    // SOLUTION: set SO_RCVTIMEO to --timeout-ms; connect() the socket if --connect
    // [slide:timeout-connect]
    const timeval limit{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    lab::check(::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit),
               "setsockopt(SO_RCVTIMEO)");

    // connect() on UDP sends nothing: it fixes the peer, filters what we receive, and lets the
    // kernel hand ICMP errors (port unreachable -> ECONNREFUSED) to this socket.
    if (connected)
        lab::check(::connect(s.get(), server.get(), server.len),
                   "connect " + lab::to_string(server));
    // [/slide:timeout-connect]
    // END

    // --size: one big datagram, compared byte for byte with what came back.
    if (auto size = args.value("--size")) {
        std::string payload(lab::parse_number<std::size_t>(*size, "--size", 0, 65507), '\0');
        for (std::size_t i = 0; i < payload.size(); ++i)
            payload[i] = static_cast<char>(i * 7 % 251);
        const std::string echo = round_trip(s, server, connected, payload, timeout_ms);
        if (echo != payload)
            throw std::runtime_error("the echo differs from what was sent: sent " +
                                     std::to_string(payload.size()) + " bytes, got " +
                                     std::to_string(echo.size()));
        lab::say("echo ", echo.size(), " bytes from ", lab::to_string(server),
                 ": identical to what was sent");
        return 0;
    }

    // Otherwise one datagram per stdin line, until EOF.
    for (std::string line; std::getline(std::cin, line);)
        lab::say("echo ", lab::quoted(round_trip(s, server, connected, line, timeout_ms)));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, echo_lines);
}
