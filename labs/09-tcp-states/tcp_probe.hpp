// tcp_probe.hpp: how lab 09 looks at TCP states from outside a socket, and holds segments back.
// Plumbing for tcp_states.cpp, not the lesson: a private network namespace with only lo, the
// nft tool to drop chosen segments on their way in, and the rows of /proc/net/tcp (proc(5)).
#pragma once
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include <array>
#include <fstream>
#include <optional>
#include <string>

#include "lab.hpp"

namespace probe {

inline constexpr std::array<const char*, 13> state_names{  // numbered as in include/net/tcp_states.h
    "?", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
    "CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "SYN_RECV"};

// A fresh network namespace with only lo, up, and an empty nftables chain on its input path.
// Not root? Become root of a new user namespace first (as `unshare -rn` does).
inline void private_loopback() {
    if (::geteuid() != 0) {
        const auto uid = std::to_string(::geteuid()), gid = std::to_string(::getegid());
        lab::check(::unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)");
        std::ofstream("/proc/self/setgroups") << "deny";
        std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
        std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
    }
    lab::check(::unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)");
    lab::Fd s(lab::check(::socket(AF_INET, SOCK_DGRAM, 0), "socket"));
    ifreq lo{};
    std::strcpy(lo.ifr_name, "lo");
    lab::check(::ioctl(s.get(), SIOCGIFFLAGS, &lo), "ioctl(SIOCGIFFLAGS, lo)");
    lo.ifr_flags |= IFF_UP;
    lab::check(::ioctl(s.get(), SIOCSIFFLAGS, &lo), "ioctl(SIOCSIFFLAGS, lo up)");
}

// Run one nft command (the nftables tool; Debian package `nftables`) in this namespace.
inline void nft(const std::string& command) {
    const pid_t child = lab::check(::fork(), "fork");
    if (child == 0) {
        ::execlp("nft", "nft", command.c_str(), nullptr);
        ::execl("/usr/sbin/nft", "nft", command.c_str(), nullptr);
        ::_exit(127);
    }
    int status = 0;
    lab::check(::waitpid(child, &status, 0), "waitpid(nft)");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        throw std::runtime_error("nft " + command + ": failed (is the nftables package installed?)");
}
inline void hold(std::uint16_t from_port, const std::string& what) {
    nft("add rule inet socklab held tcp sport " + std::to_string(from_port) + " " + what + " drop");
}
inline void release() { nft("flush chain inet socklab held"); }

// The state in this namespace's /proc/net/tcp or tcp6 of the socket with these ports, if any.
// Rows: "slot local-hex-address:port remote-hex-address:port state ...", the numbers in hex.
inline std::optional<std::string> proc_state(std::uint16_t local_port, std::uint16_t remote_port) {
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        std::ifstream in(table);
        std::string line, slot, local, remote;
        for (std::getline(in, line); in >> slot >> local >> remote >> line; std::getline(in, line))
            if (std::stoul(local.substr(local.find(':') + 1), nullptr, 16) == local_port &&
                std::stoul(remote.substr(remote.find(':') + 1), nullptr, 16) == remote_port)
                return state_names.at(std::stoul(line, nullptr, 16));
    }
    return std::nullopt;
}

}  // namespace probe
