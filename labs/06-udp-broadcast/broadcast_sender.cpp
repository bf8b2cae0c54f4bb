// broadcast_sender.cpp: send UDP datagrams to a broadcast address, with SO_BROADCAST set
//                       (or, to see why, not).
// Notes: 广播 (发送端)
// Usage: broadcast_sender [--host ADDR] [--port P] [--message TEXT] [--no-so-broadcast]
// Try:   ./broadcast_receiver --host 0.0.0.0 &  ./broadcast_receiver --host 0.0.0.0 &
//        then   echo hello | ./broadcast_sender      (both receivers print it)
// Observe: `strace -e trace=network ./broadcast_sender --message hi` shows setsockopt(SO_BROADCAST)
//          before sendto; with --no-so-broadcast sendto fails with EACCES;
//          `tshark -i lo udp port 21567`.
// Simplifications: IPv4 only has broadcast (IPv6 uses multicast such as ff02::1 instead; --host ::1
//          simply sends unicast). On this machine send only to 127.255.255.255: other broadcast
//          addresses reach real networks (the tests use their own network namespaces).
// See also: socket(7) SO_BROADCAST, ip(7), RFC 919, RFC 1812 5.3.5; UNP ch. 20;
//          broadcast_receiver.cpp.
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>

#include "lab.hpp"

namespace {

// The notes send to Python's '<broadcast>' (255.255.255.255, which would leave through a real
// interface). Loopback has a broadcast address of its own: 127.255.255.255, on lo only.
constexpr std::string_view loopback_broadcast = "127.255.255.255";
constexpr std::uint16_t notes_port = 21567;  // the notes' 广播 port
constexpr std::array options{
    lab::Option{"--host", "ADDR", "destination broadcast address (default {}, the loopback's)",
                loopback_broadcast},
    lab::Option{"--port", "P", "destination port (default {})", notes_port},
    lab::Option{"--message", "TEXT",
                "send TEXT as one datagram and exit (default: one per stdin line)"},
    lab::Option{"--no-so-broadcast", "",
                "skip setsockopt(SO_BROADCAST), to see sendto fail with EACCES"},
};
constexpr lab::Program program{"broadcast_sender", "Sends UDP datagrams to a broadcast address.",
                               options};

void send_one(int sock, const lab::Address& to, std::string_view payload) {
    const ssize_t n =
        lab::check(::sendto(sock, payload.data(), payload.size(), 0, to.get(), to.len),
                   "sendto " + lab::to_string(to));
    lab::say("sent ", n, " bytes to ", lab::to_string(to));
}

// Set SO_BROADCAST (unless told not to), then send the message or each stdin line.
int send_broadcasts(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address to =
        lab::resolve(args.get("--host", loopback_broadcast), args.port(notes_port), SOCK_DGRAM);
    lab::Fd sock(lab::check(::socket(to.family(), SOCK_DGRAM, 0), "socket"));

    // The kernel refuses to send to a broadcast address (EACCES) unless the socket asked for
    // it: one careless sendto must not reach every host on the link.
    // SOLUTION: unless --no-so-broadcast, set SO_BROADCAST to 1 with setsockopt()
    // [slide:so-broadcast]
    if (!args.flag("--no-so-broadcast")) {
        const int on = 1;
        lab::check(::setsockopt(sock.get(), SOL_SOCKET, SO_BROADCAST, &on, sizeof on),
                   "setsockopt(SO_BROADCAST)");
    }
    // [/slide:so-broadcast]
    // END
    int state = 0;
    socklen_t len = sizeof state;
    lab::check(::getsockopt(sock.get(), SOL_SOCKET, SO_BROADCAST, &state, &len),
               "getsockopt(SO_BROADCAST)");
    lab::say("SO_BROADCAST is ", state ? "on" : "off", "; sending to ", lab::to_string(to));

    // One datagram from the command line, or one per stdin line until EOF.
    if (auto text = args.value("--message")) {
        send_one(sock.get(), to, *text);
        return 0;
    }
    for (std::string line; std::getline(std::cin, line);)
        send_one(sock.get(), to, line);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, send_broadcasts);
}
