// udp_echo_server.cpp: a UDP echo server: send every datagram back to whoever sent it; count
//                      and log each.
// Notes: echo服务器 (服务端)          Protocol: RFC 862 (echo), on a port of our own
// Usage: udp_echo_server [--host H] [--port P] [--count N]
// Try:   ./udp_echo_server &   then   ./udp_echo_client   (type lines)   or   nc -u 127.0.0.1 8088
// Observe: each datagram gives one `callback N from HOST:PORT len L data "..."` line; two clients
//          show two source ports. `ss -uanp 'sport = :8088'` shows one socket serving every client.
// Simplifications: one datagram at a time, in arrival order; the log shows its first 64 bytes.
// See also: recvfrom(2), sendto(2), udp(7); udp_echo_client.cpp; UNP 8.3-8.4 (dg_echo).
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the notes' echo服务器 binds 8088
// > 65507 (IPv4) and 65527 (IPv6): no datagram is ever cut
constexpr std::size_t largest_datagram = 65535;
constexpr std::size_t shown_bytes = 64;  // the log line shows this much of each datagram
constexpr std::array options{
    lab::Option{"--host", "H", "address to bind (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to bind (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--count", "N",
                "exit after echoing N datagrams (default: run until SIGINT/SIGTERM)"},
};
constexpr lab::Program program{
    "udp_echo_server", "Sends every UDP datagram back to its sender, and logs it.", options};

// The first bytes of a datagram, escaped (lab::quoted), with "..." when there are more.
std::string preview(std::string_view bytes) {
    return bytes.size() > shown_bytes ? lab::quoted(bytes.substr(0, shown_bytes)) + "..."
                                      : lab::quoted(bytes);
}

// Bind, announce, then echo datagrams until --count or a signal.
int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const auto count = args.number<long>("--count", 1, 1'000'000'000, 0L);

    // A server binds a known port: clients must know where to send.
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);
    lab::Fd s(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));
    lab::check(::bind(s.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::announce_ready(s.get());

    std::vector<char> buf(largest_datagram);
    for (long n = 1; count == 0 || n <= count; ++n) {
        // recvfrom tells us who sent the datagram: that address is where the echo goes.
        // SOLUTION: receive one datagram, send it back, print the callback line
        // [slide:echo]
        lab::Address from;
        const ssize_t got = lab::check(
            ::recvfrom(s.get(), buf.data(), buf.size(), 0, from.get(), &from.len), "recvfrom");

        // One sendto is one datagram back, all of it or nothing; the socket stays unconnected,
        // so the next datagram may come from anyone.
        lab::check(
            ::sendto(s.get(), buf.data(), static_cast<std::size_t>(got), 0, from.get(), from.len),
            "sendto " + lab::to_string(from));
        // [/slide:echo]
        lab::say("callback ", n, " from ", lab::to_string(from), " len ", got, " data ",
                 preview({buf.data(), static_cast<std::size_t>(got)}));
        // END
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
