// address.hpp: the address plumbing of lab.hpp, which includes it after check() and say(); include
// lab.hpp, not this. Lab 01 fills a sockaddr_in by hand and lab 07 walks getaddrinfo's list; these
// helpers stand for those calls afterwards.
//   Address, resolve, host_port, to_string, local_address, announce_ready (the READY line)
#pragma once
#include <netdb.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

namespace lab {

// A socket address of either family, with its length.
struct Address {
    sockaddr_storage storage{};
    socklen_t len = sizeof(storage);
    sockaddr* get() noexcept { return reinterpret_cast<sockaddr*>(&storage); }
    const sockaddr* get() const noexcept { return reinterpret_cast<const sockaddr*>(&storage); }
    int family() const noexcept { return storage.ss_family; }
};
// HOST (numeric, or a name) and PORT for a socket of `socktype`: the first answer of getaddrinfo.
inline Address resolve(const std::string& host, std::uint16_t port, int socktype) {
    addrinfo hints{};
    hints.ai_flags = AI_NUMERICSERV;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    addrinfo* list = nullptr;
    check_gai(::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list),
              "getaddrinfo " + host);
    Address a;
    a.len = list->ai_addrlen;
    std::memcpy(&a.storage, list->ai_addr, a.len);
    ::freeaddrinfo(list);
    return a;
}
// Numeric host and port of an address: {"::1", 8088}.
inline std::pair<std::string, std::uint16_t> host_port(const Address& a) {
    std::array<char, NI_MAXHOST> host{};
    std::array<char, NI_MAXSERV> serv{};
    check_gai(::getnameinfo(a.get(), a.len, host.data(), host.size(), serv.data(), serv.size(),
                            NI_NUMERICHOST | NI_NUMERICSERV),
              "getnameinfo");
    return {host.data(), parse_port(serv.data(), "getnameinfo")};
}
// "127.0.0.1:8088" or "[::1]:8088".
inline std::string to_string(const Address& a) {
    const auto [host, port] = host_port(a);
    return (a.family() == AF_INET6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}
inline Address local_address(int fd) {
    Address a;
    check(::getsockname(fd, a.get(), &a.len), "getsockname");
    return a;
}

// The ready line every server prints once it can take work: "READY tcp 127.0.0.1 40117".
// The port is read back from the kernel, so --port 0 shows the port really bound.
inline void announce_ready(int fd) {
    int type = 0;
    socklen_t len = sizeof(type);
    check(::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), "getsockopt(SO_TYPE)");
    const auto [host, port] = host_port(local_address(fd));
    say("READY ", type == SOCK_STREAM ? "tcp" : "udp", ' ', host, ' ', port);
}

}  // namespace lab
