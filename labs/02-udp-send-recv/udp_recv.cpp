// udp_recv.cpp: receive UDP datagrams and show each exactly: sender, bytes, length, real length, truncation.
// Notes: UDP / 接收数据
// Usage: udp_recv [--host H] [--port P] [--bufsize B] [--count N]
// Try:   ./udp_recv --port 8088   then   echo hi | nc -u -w1 127.0.0.1 8088   or   ./udp_send --size 3000
// Observe: `ss -uanp` shows the bound socket; a 3000-byte datagram into the notes' 1024-byte buffer
//          arrives cut to 1024 bytes, and only MSG_TRUNC tells you (the notes' recvfrom says nothing).
// Simplifications: one datagram at a time; the payload is printed C-escaped ("\x00", "\n").
// See also: recvmsg(2) (MSG_TRUNC), udp(7); udp_send.cpp; next lab: text encoding (lab 03).
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <string>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;      // the notes' 接收数据 example binds 8088
constexpr std::size_t notes_bufsize = 1024;     // and receives into 1024 bytes
constexpr std::array options{
    lab::Option{"--host", "H", "address to bind (default 127.0.0.1)"},
    lab::Option{"--port", "P", "port to bind (default 8088; 0: the kernel picks)"},
    lab::Option{"--bufsize", "B", "receive buffer size in bytes, 1..65536 (default 1024, as the notes)"},
    lab::Option{"--count", "N", "exit after N datagrams (default: run until SIGINT/SIGTERM)"},
};
constexpr lab::Program program{"udp_recv", "Receives UDP datagrams and prints each one byte-exactly.", options};

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, [](const lab::Args& args) {
        lab::exit_on_signals();
        const auto bufsize = args.value("--bufsize") ? lab::parse_number<std::size_t>(*args.value("--bufsize"), "--bufsize", 1, 65536) : notes_bufsize;
        const auto count = args.value("--count") ? lab::parse_number<long>(*args.value("--count"), "--count", 1, 1'000'000'000) : 0L;

        // A receiver must bind: senders need a fixed address to send to.
        const lab::Address here = lab::resolve(args.get("--host", "127.0.0.1"), args.port(notes_port), SOCK_DGRAM);
        lab::Fd s(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));
        lab::check(::bind(s.get(), here.get(), here.len), "bind " + lab::to_string(here));
        lab::announce_ready(s.get());

        std::vector<char> buf(bufsize);
        for (long i = 1; count == 0 || i <= count; ++i) {
            // recvmsg fills in the sender's address and msg_flags. With the MSG_TRUNC flag Linux returns
            // the datagram's real length even when the buffer was too small (udp(7)); the rest is gone.
            // BEGIN SOLUTION: receive one datagram with recvmsg(MSG_TRUNC) and print it (see the spec's format)
            // [slide:recvmsg]
            lab::Address from;
            iovec iov{buf.data(), buf.size()};
            msghdr msg{};
            msg.msg_name = &from.storage;
            msg.msg_namelen = from.len;
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            const auto real = static_cast<std::size_t>(lab::check(::recvmsg(s.get(), &msg, MSG_TRUNC), "recvmsg"));
            from.len = msg.msg_namelen;
            const std::size_t got = std::min(real, buf.size());
            const bool truncated = msg.msg_flags & MSG_TRUNC;
            // [/slide:recvmsg]

            lab::say("datagram ", i, " from ", lab::to_string(from), " len ", got, " real ", real,
                     " trunc ", truncated ? 1 : 0, " data ", lab::quoted({buf.data(), got}));
            if (truncated)
                lab::say("  TRUNCATED: the buffer holds ", buf.size(), " bytes; the other ", real - got,
                         " bytes of this datagram are lost for good");
                        // STUB throw std::runtime_error("receiving is not written yet");
            // END SOLUTION
        }
        return 0;
    });
}
