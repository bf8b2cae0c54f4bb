// udp_send.cpp: send UDP datagrams to one address: each stdin line, a message, or N bytes.
// Notes: UDP / 发送数据
// Usage: udp_send [--host H] [--port P] [--message TEXT | --size N | --hex BYTES]
// Try:   ./udp_recv &   then   echo hello | ./udp_send      (or: nc -u -l 127.0.0.1 8088)
// Observe: `strace -e trace=network ./udp_send --message hi` shows socket() then sendto(), and no
//          bind(): the kernel binds an ephemeral port at the first sendto (getsockname shows it).
// Simplifications: sends to the first address getaddrinfo returns; no retries (nor has UDP).
// See also: sendto(2), udp(7); udp_recv.cpp (the receiving side).
#include <sys/socket.h>

#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the port the notes' 发送数据 example sends to
constexpr std::array options{
    lab::Option{"--host", "H", "destination address (default {})", lab::default_host},
    lab::Option{"--port", "P", "destination port (default {})", notes_port},
    lab::Option{"--message", "TEXT", "send TEXT as one datagram and exit"},
    lab::Option{"--size", "N", "send one datagram of N bytes (0..65535: try 65507 and 65508)"},
    lab::Option{"--hex", "BYTES",
                "send these bytes, written in hex (e.g. 00ff0a), as one datagram"},
};
constexpr lab::Program program{
    "udp_send", "Sends UDP datagrams; without a payload option, one per stdin line.", options};

// "00ff0a" -> the bytes 00 ff 0a; a usage error names the bad text.
std::string from_hex(std::string_view hex) {
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        unsigned value = 0;
        const auto pair = hex.substr(i, 2);
        const auto [end, ec] = std::from_chars(pair.data(), pair.data() + pair.size(), value, 16);
        if (pair.size() != 2 || ec != std::errc{} || end != pair.data() + 2)
            throw lab::usage_error("--hex wants pairs of hex digits, not '" + std::string(hex) +
                                   "'");
        out.push_back(static_cast<char>(value));
    }
    return out;
}

// One sendto() is one datagram: it goes whole or not at all (EMSGSIZE when it cannot fit).
void send_one(const lab::Fd& s, const lab::Address& to, std::string_view payload) {
    // SOLUTION: send the payload as one datagram with sendto(); print what went where
    // [slide:sendto]
    const ssize_t n =
        lab::check(::sendto(s.get(), payload.data(), payload.size(), 0, to.get(), to.len),
                   "sendto " + lab::to_string(to));
    // [/slide:sendto]
    lab::say("sent ", n, " bytes to ", lab::to_string(to), " from ",
             lab::to_string(lab::local_address(s.get())));
    // END
}

// Send one payload from the command line, or one datagram per stdin line.
int send_datagrams(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address to =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);

    // A UDP socket needs no connection and, for a sender, no bind(): see its address before
    // and after.
    lab::Fd s(lab::check(::socket(to.family(), SOCK_DGRAM, 0), "socket"));
    lab::say("before the first sendto the socket is bound to ",
             lab::to_string(lab::local_address(s.get())), " (port 0: not bound yet)");

    // One payload from the command line, or one datagram per stdin line until EOF (as the
    // notes' input() loop).
    if (auto text = args.value("--message")) {
        send_one(s, to, *text);
        return 0;
    }
    if (auto size = args.value("--size")) {
        const std::string payload(lab::parse_number<std::size_t>(*size, "--size", 0, 65535), 'x');
        send_one(s, to, payload);
        return 0;
    }
    if (auto hex = args.value("--hex")) {
        send_one(s, to, from_hex(*hex));
        return 0;
    }
    for (std::string line; std::getline(std::cin, line);)
        send_one(s, to, line);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, send_datagrams);
}
