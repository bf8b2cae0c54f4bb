// socket_info.cpp: create TCP, UDP, IPv6 and AF_UNIX sockets and print what the kernel says they are.
// Notes: socket / 创建socket (TCP链接, UDP链接)
// Usage: socket_info [--host H] [--port P] [--hold]
// Try:   ./socket_info --hold        then, in another shell: ls -l /proc/$(pgrep socket_info)/fd
// Observe: each socket is a small int fd (the lowest free one) that /proc shows as socket:[inode];
//          `ss -uanp` shows the UDP socket bound to the port the kernel picked.
// Simplifications: the sockets are created and inspected, never used to send anything (lab 02 does).
// See also: socket(2), socket(7), getsockopt(2); next: udp_send.cpp / udp_recv.cpp (lab 02).
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include <array>
#include <iostream>
#include <string>

#include "lab.hpp"

namespace {

constexpr std::array options{
    lab::Option{"--host", "H", "address to bind the UDP socket to (default 127.0.0.1)"},
    lab::Option{"--port", "P", "port to bind it to (default 0: the kernel picks one)"},
    lab::Option{"--hold", "", "keep the sockets open until stdin ends, so you can look at /proc"},
};
constexpr lab::Program program{"socket_info", "Creates sockets of several kinds and prints what the kernel reports.", options};

// Names for the constants getsockopt() hands back as plain numbers.
std::string domain_name(int d) {
    switch (d) {
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_UNIX: return "AF_UNIX";
    default: return std::to_string(d);
    }
}
std::string type_name(int t) { return t == SOCK_STREAM ? "SOCK_STREAM" : t == SOCK_DGRAM ? "SOCK_DGRAM" : std::to_string(t); }
std::string protocol_name(int p) {
    return p == IPPROTO_TCP ? "IPPROTO_TCP" : p == IPPROTO_UDP ? "IPPROTO_UDP" : p == 0 ? "0 (the family's only protocol)" : "";
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

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, [](const lab::Args& args) {
        lab::exit_on_signals();

        // Protocol 0 means "the default protocol of this family and type": TCP for a stream, UDP for datagrams.
        // [slide:socket-calls]
        lab::Fd tcp(lab::check(::socket(AF_INET, SOCK_STREAM, 0), "socket(AF_INET, SOCK_STREAM)"));
        describe(tcp, "AF_INET, SOCK_STREAM, 0");
        lab::Fd udp(lab::check(::socket(AF_INET, SOCK_DGRAM, 0), "socket(AF_INET, SOCK_DGRAM)"));
        describe(udp, "AF_INET, SOCK_DGRAM, 0");
        // [/slide:socket-calls]
        // AF_INET is IPv4 only; IPv6 is a family of its own.
        lab::Fd tcp6(lab::check(::socket(AF_INET6, SOCK_STREAM, IPPROTO_TCP), "socket(AF_INET6, SOCK_STREAM)"));
        describe(tcp6, "AF_INET6, SOCK_STREAM, IPPROTO_TCP");
        // AF_UNIX sockets connect processes on this machine only, named by a path (or unnamed, as here).
        lab::Fd local(lab::check(::socket(AF_UNIX, SOCK_STREAM, 0), "socket(AF_UNIX, SOCK_STREAM)"));
        describe(local, "AF_UNIX, SOCK_STREAM, 0");

        // socket() made no connection and chose no address. bind() to port 0 lets the kernel pick the
        // port; getsockname() reads back which. The UDP socket's own family must match the address.
        // BEGIN SOLUTION: resolve --host/--port, bind a UDP socket there and print the address it got
        const lab::Address want = lab::resolve(args.get("--host", "127.0.0.1"), args.port(0), SOCK_DGRAM);
        lab::Fd bound(lab::check(::socket(want.family(), SOCK_DGRAM, 0), "socket"));
        lab::say("before bind: fd=", bound.get(), " is at ", lab::to_string(lab::local_address(bound.get())),
                 " (no address yet)");
        // [slide:bind-port-zero]
        lab::check(::bind(bound.get(), want.get(), want.len), "bind " + lab::to_string(want));
        const auto [host, port] = lab::host_port(lab::local_address(bound.get()));
        lab::say("bound fd=", bound.get(), " to ", lab::to_string(lab::local_address(bound.get())),
                 " host=", host, " port=", port, args.port(0) == 0 ? " (chosen by the kernel)" : "");
        // [/slide:bind-port-zero]
        // END SOLUTION

        // --hold: keep everything open so /proc/PID/fd and `ss -uanp` can be inspected; stdin EOF ends.
        if (args.flag("--hold")) {
            lab::say("holding the sockets open; end stdin (Ctrl-D) to exit");
            for (std::string line; std::getline(std::cin, line);) {}
        }
        return 0;
    });
}
