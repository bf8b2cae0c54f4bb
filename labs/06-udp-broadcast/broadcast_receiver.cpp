// broadcast_receiver.cpp: receive UDP broadcasts; several receivers on one host share the port.
// Notes: 广播 (接收)
// Usage: broadcast_receiver [--host H] [--port P] [--no-reuseaddr]
// Try:   ./broadcast_receiver --host 0.0.0.0 &  ./broadcast_receiver --host 0.0.0.0 &
//        ./broadcast_receiver --host 127.0.0.1 &   echo hi | ./broadcast_sender
//        (the two wildcard receivers print "hi ... to 127.255.255.255"; the third prints nothing)
// Observe: `ss -uanp sport = :21567` lists every receiver on the same port; each line printed shows
//          the datagram's destination (IP_PKTINFO), so you can tell a broadcast from a unicast.
// Simplifications: runs until SIGINT/SIGTERM; --host defaults to 127.0.0.1 as in every lab, but a
//          receiver bound there never sees a broadcast: the README always says --host 0.0.0.0.
// See also: socket(7) SO_REUSEADDR, ip(7) IP_PKTINFO, ipv6(7); UNP 20.4; broadcast_sender.cpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 21567;  // the notes' 广播 port
constexpr std::array options{
    lab::Option{"--host", "H",
                "address to bind: 0.0.0.0 to receive broadcasts (default {}, which never does)",
                lab::default_host},
    lab::Option{"--port", "P", "port to bind (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--no-reuseaddr", "",
                "skip SO_REUSEADDR: a second receiver on the port then fails"},
};
constexpr lab::Program program{"broadcast_receiver",
                               "Receives UDP datagrams and says where each was sent to.", options};

bool is_wildcard(const lab::Address& a) {
    if (a.family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr);
}

// The destination address in the datagram's IP header, from the IP_PKTINFO / IPV6_PKTINFO message.
std::string destination(msghdr& msg) {
    // SOLUTION: walk the cmsgs; return IP_PKTINFO/IPV6_PKTINFO's address as text
    std::array<char, INET6_ADDRSTRLEN> text{'?'};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            in_pktinfo info;
            std::memcpy(&info, CMSG_DATA(c), sizeof info);
            ::inet_ntop(AF_INET, &info.ipi_addr, text.data(), text.size());
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            in6_pktinfo info;
            std::memcpy(&info, CMSG_DATA(c), sizeof info);
            ::inet_ntop(AF_INET6, &info.ipi6_addr, text.data(), text.size());
        }
    }
    return text.data();
    // END
}

// Bind (with SO_REUSEADDR), then print each datagram and the address it was sent to.
int receive_broadcasts(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);
    lab::Fd sock(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));

    // SO_REUSEADDR on every receiver (before bind) lets several UDP sockets bind one port, and
    // a broadcast is then delivered to each of them. Receivers need no SO_BROADCAST.
    const int on = 1;
    // SOLUTION: unless --no-reuseaddr, set SO_REUSEADDR to 1 with setsockopt()
    // [slide:reuseaddr]
    if (!args.flag("--no-reuseaddr"))
        lab::check(::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
                   "setsockopt(SO_REUSEADDR)");
    // [/slide:reuseaddr]
    // END
    // Ask the kernel to tell us each datagram's destination address.
    if (here.family() == AF_INET)
        lab::check(::setsockopt(sock.get(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on),
                   "setsockopt(IP_PKTINFO)");
    else
        lab::check(::setsockopt(sock.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on),
                   "setsockopt(IPV6_RECVPKTINFO)");

    // A socket bound to a unicast address only gets datagrams sent to that very address.
    lab::check(::bind(sock.get(), here.get(), here.len), "bind " + lab::to_string(here));
    if (!is_wildcard(here))
        lab::say("note: bound to ", lab::host_port(here).first,
                 ", so only datagrams sent to exactly that address arrive; "
                 "broadcasts need --host 0.0.0.0");
    lab::announce_ready(sock.get());

    std::vector<char> buf(65536);
    for (long count = 1;; ++count) {
        // recvmsg: the payload, the sender's address, and a control message naming the
        // destination.
        lab::Address from;
        alignas(cmsghdr) std::array<char, 256> control{};
        iovec iov{buf.data(), buf.size()};
        msghdr msg{};
        msg.msg_name = &from.storage;
        msg.msg_namelen = from.len;
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        const auto n =
            static_cast<std::size_t>(lab::check(::recvmsg(sock.get(), &msg, 0), "recvmsg"));
        from.len = msg.msg_namelen;
        lab::say("datagram ", count, " from ", lab::to_string(from), " to ", destination(msg), ": ",
                 std::string_view(buf.data(), n));
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, receive_broadcasts);
}
