// udp_recv.cpp: receive UDP datagrams and show each exactly: sender, bytes, length, real length
//               and truncation.
// Notes: UDP / 接收数据
// Usage: udp_recv [--host H] [--port P] [--bufsize B] [--count N]
// Try:   ./udp_recv --port 8088   then   echo hi | nc -u -w1 127.0.0.1 8088
//        or   ./udp_send --size 3000
// Observe: `ss -uanp` shows the bound socket; a 3000-byte datagram into the notes' 1024-byte buffer
//          arrives cut to 1024 bytes, and only MSG_TRUNC tells you (the notes' recvfrom is
//          silent).
// Simplifications: one datagram at a time; the payload is printed C-escaped ("\x00", "\n").
// See also: recvmsg(2) (MSG_TRUNC), udp(7); udp_send.cpp; next lab: text encoding (lab 03).
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;   // the notes' 接收数据 example binds 8088
constexpr std::size_t notes_bufsize = 1024;  // and receives into 1024 bytes
constexpr std::array options{
    lab::Option{"--host", "H", "address to bind (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to bind (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--bufsize", "B",
                "receive buffer size in bytes, 1..65536 (default {}, as the notes)", notes_bufsize},
    lab::Option{"--count", "N", "exit after N datagrams (default: run until SIGINT/SIGTERM)"},
};
constexpr lab::Program program{"udp_recv",
                               "Receives UDP datagrams and prints each one byte-exactly.", options};

// Bind, announce, then print every datagram until --count or a signal.
int receive_datagrams(const lab::Args& args) {
    lab::exit_on_signals();
    const auto bufsize = args.number<std::size_t>("--bufsize", 1, 65536, notes_bufsize);
    const auto count = args.number<long>("--count", 1, 1'000'000'000, 0L);

    // A receiver must bind: senders need a fixed address to send to.
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);
    lab::Fd s(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));
    lab::check(::bind(s.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::announce_ready(s.get());

    std::vector<char> buf(bufsize);
    for (long i = 1; count == 0 || i <= count; ++i) {
        // recvmsg fills in the sender's address and msg_flags. With the MSG_TRUNC flag Linux
        // returns the datagram's real length even when the buffer was too small (udp(7)); the
        // rest is gone.
        // SOLUTION: receive one datagram with recvmsg(MSG_TRUNC) and print it
        // [slide:recvmsg]
        lab::Address from;
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_name = &from.storage;
        msg.msg_namelen = from.len;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        const auto real =
            static_cast<std::size_t>(lab::check(::recvmsg(s.get(), &msg, MSG_TRUNC), "recvmsg"));
        from.len = msg.msg_namelen;
        const std::size_t got = std::min(real, buf.size());
        const bool truncated = msg.msg_flags & MSG_TRUNC;
        // [/slide:recvmsg]

        const int trunc = truncated ? 1 : 0;
        const std::string data = lab::quoted({buf.data(), got});
        lab::say("datagram ", i, " from ", lab::to_string(from), " len ", got, " real ", real,
                 " trunc ", trunc, " data ", data);
        if (truncated)
            lab::say("  TRUNCATED: the buffer holds ", buf.size(), " bytes; the other ", real - got,
                     " bytes of this datagram are lost for good");
        // END
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, receive_datagrams);
}
