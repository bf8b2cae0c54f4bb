// socket_info.cpp: create TCP, UDP, IPv6 and AF_UNIX sockets; print what the kernel says they are.
// Notes: socket / 创建socket (TCP链接, UDP链接)
// Usage: socket_info [--host H] [--port P] [--hold]
// Try:   ./socket_info --hold        then, in another shell: ls -l /proc/$(pgrep socket_info)/fd
// Observe: each socket is a small int fd (the lowest free one) that /proc shows as socket:[inode];
//          `ss -uanp` shows the UDP socket bound to the port the kernel picked.
// Simplifications: the sockets are created and inspected, never used to send (lab 02 sends).
// See also: socket(2), socket(7), getsockopt(2); next: udp_send.cpp / udp_recv.cpp (lab 02).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <limits>
#include <string>
#include <string_view>

#include "lab.hpp"

namespace {

constexpr std::array options{
    lab::Option{"--host", "H",
                "numeric IPv4 or IPv6 address to bind the UDP socket to (default {})",
                lab::default_host},
    lab::Option{"--port", "P", "port to bind it to (default 0: the kernel picks one)"},
    lab::Option{"--hold", "", "keep the sockets open until stdin ends, so you can look at /proc"},
};
constexpr lab::Program program{
    "socket_info", "Creates sockets of several kinds and prints what the kernel reports.", options};

// Names for the constants getsockopt() hands back as plain numbers.
std::string domain_name(int d) {
    return d == AF_INET    ? "AF_INET"
           : d == AF_INET6 ? "AF_INET6"
           : d == AF_UNIX  ? "AF_UNIX"
                           : std::to_string(d);
}
std::string type_name(int t) {
    return t == SOCK_STREAM ? "SOCK_STREAM" : t == SOCK_DGRAM ? "SOCK_DGRAM" : std::to_string(t);
}
std::string protocol_name(int p) {
    return p == IPPROTO_TCP   ? "IPPROTO_TCP"
           : p == IPPROTO_UDP ? "IPPROTO_UDP"
           : p == 0           ? "0 (the family's only protocol)"
                              : "";
}

// The address for --host/--port, built by hand, as lab::resolve() builds it for every later lab
// (ip(7), ipv6(7)). sin_port is in network byte order (big-endian), so htons() converts the
// port; inet_pton() writes the address bytes, which are in that order already.
lab::Address address_by_hand(const std::string& host, std::uint16_t port) {
    lab::Address a;
    sockaddr_in v4{};
    sockaddr_in6 v6{};
    if (::inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons(port);
        std::memcpy(&a.storage, &v4, sizeof v4);
        a.len = sizeof v4;
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons(port);
        std::memcpy(&a.storage, &v6, sizeof v6);
        a.len = sizeof v6;
    } else {
        throw lab::usage_error("--host wants a numeric IPv4 or IPv6 address, not '" + host + "'");
    }
    return a;
}

// The port field exactly as the kernel stored it: still in network byte order.
std::uint16_t raw_port(const lab::Address& a) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(a.get());
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(a.get());
    return a.family() == AF_INET ? v4->sin_port : v6->sin6_port;
}

// Ask the kernel what this fd is: SO_DOMAIN, SO_TYPE and SO_PROTOCOL (socket(7)).
// [slide:get-option]
int read_option(int fd, int option, const char* what) {
    int value = 0;
    socklen_t len = sizeof value;
    lab::check(::getsockopt(fd, SOL_SOCKET, option, &value, &len), what);
    return value;
}
// [/slide:get-option]

void describe(const lab::Fd& s, std::string_view asked) {
    const int domain = read_option(s.get(), SO_DOMAIN, "getsockopt(SO_DOMAIN)");
    const int type = read_option(s.get(), SO_TYPE, "getsockopt(SO_TYPE)");
    const int protocol = read_option(s.get(), SO_PROTOCOL, "getsockopt(SO_PROTOCOL)");
    lab::say("socket fd=", s.get(), " domain=", domain_name(domain), " type=", type_name(type),
             " protocol=", protocol, ' ', protocol_name(protocol), "  <- asked for ", asked);
}

// Create the four sockets, describe each, then bind the UDP one and show its address.
int show_sockets(const lab::Args& args) {
    lab::exit_on_signals();

    // Protocol 0 means "the default protocol of this family and type": TCP for a stream,
    // UDP for datagrams.
    // [slide:socket-calls]
    lab::Fd tcp(lab::check(::socket(AF_INET, SOCK_STREAM, 0), "socket(AF_INET, SOCK_STREAM)"));
    describe(tcp, "AF_INET, SOCK_STREAM, 0");
    lab::Fd udp(lab::check(::socket(AF_INET, SOCK_DGRAM, 0), "socket(AF_INET, SOCK_DGRAM)"));
    describe(udp, "AF_INET, SOCK_DGRAM, 0");
    // [/slide:socket-calls]
    // AF_INET is IPv4 only; IPv6 is a family of its own.
    lab::Fd tcp6(
        lab::check(::socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP), "socket(AF_INET6, SOCK_STREAM)"));
    describe(tcp6, "AF_INET6, SOCK_STREAM, IPPROTO_TCP");
    // AF_UNIX sockets connect processes on this machine only, named by a path (or, as here,
    // unnamed).
    lab::Fd local(lab::check(::socket(AF_UNIX, SOCK_STREAM, 0), "socket(AF_UNIX, SOCK_STREAM)"));
    describe(local, "AF_UNIX, SOCK_STREAM, 0");

    // socket() made no connection and chose no address. bind() to port 0 lets the kernel pick
    // the port; getsockname() reads back which. The socket's family must match the address's.
    // SOLUTION: build the --host/--port address by hand, bind a UDP socket there, print it
    const lab::Address want = address_by_hand(args.get("--host", lab::default_host), args.port(0));
    lab::Fd bound(lab::check(::socket(want.family(), SOCK_DGRAM, 0), "socket"));
    lab::say("before bind: fd=", bound.get(), " is at ",
             lab::to_string(lab::local_address(bound.get())), " (no address yet)");
    // [slide:bind-port-zero]
    lab::check(::bind(bound.get(), want.get(), want.len), "bind " + lab::to_string(want));

    lab::Address got;
    lab::check(::getsockname(bound.get(), got.get(), &got.len), "getsockname");
    const std::uint16_t raw = raw_port(got);
    const std::uint16_t port = ntohs(raw);
    const std::string host = lab::host_port(got).first;
    const std::string_view who = args.port(0) == 0 ? " (chosen by the kernel)" : "";
    lab::say("bound fd=", bound.get(), " to ", lab::to_string(got), " host=", host, " port=", port,
             who);
    // [/slide:bind-port-zero]
    // On a little-endian CPU (x86, most ARM) the two orders differ: 0x1f98 is stored 0x981f.
    std::array<char, 7> hex{};
    std::snprintf(hex.data(), hex.size(), "0x%04x", raw);
    lab::say("byte order: port=", port, " is sin_port=", raw, " (", hex.data(),
             ") as stored, in network byte order; ntohs() turns it back");
    // END

    // --hold: keep everything open for /proc/PID/fd and `ss -uanp`; stdin EOF ends.
    if (args.flag("--hold")) {
        lab::say("holding the sockets open; end stdin (Ctrl-D) to exit");
        std::cin.ignore(std::numeric_limits<std::streamsize>::max());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, show_sockets);
}
