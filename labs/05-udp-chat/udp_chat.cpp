// udp_chat.cpp: a two-way UDP chat: one socket, a thread that receives and prints, the main
//               thread sends stdin.
// Notes: 多线程聊天 (UDP)
// Usage: udp_chat --peer HOST:PORT [--host H] [--port P] [--wake eventfd|shutdown|close|none]
// Try:   ./udp_chat --port 9001 --peer 127.0.0.1:9002     and in another shell
//        ./udp_chat --port 9002 --peer 127.0.0.1:9001     then type in both;
//        Ctrl-D (or /quit) ends one.
// Observe: `ss -uanp` shows one UDP socket and `ls /proc/$(pgrep -n udp_chat)/task` two threads;
//          `strace -f -e trace=network,poll,write ./udp_chat ...` shows the receiver in poll().
// Simplifications: one peer fixed at start; a line is one datagram (lost ones stay lost); a
//          datagram that is not UTF-8 shows as \x.. escapes (only lead and continuation bytes are
//          checked: overlong forms and surrogates pass); a receive error ends the program at once.
// See also: eventfd(2), poll(2), shutdown(2), close(2) ("Multithreaded processes and close()");
//          lab 04 (udp_echo); lab 08 (the TCP chat).
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the notes bind 172.20.10.4:8088; we bind loopback
constexpr std::string_view quit_command = "/quit";
constexpr std::array options{
    lab::Option{"--peer", "HOST:PORT",
                "where typed lines go (required), e.g. 127.0.0.1:9002 or [::1]:9002"},
    lab::Option{"--host", "H", "local address to bind (default {})", lab::default_host},
    lab::Option{"--port", "P", "local port to bind (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--wake", "HOW",
                "how the sender stops the receiver at the end: eventfd (default), shutdown, "
                "close or none (the last two hang, as the notes' program does)"},
};
constexpr lab::Program program{
    "udp_chat", "Chats over UDP: prints what arrives, sends each stdin line.", options};

enum class Wake { eventfd, shutdown, close, none };

Wake parse_wake(const std::string& how) {
    if (how == "eventfd")
        return Wake::eventfd;
    if (how == "shutdown")
        return Wake::shutdown;
    if (how == "close")
        return Wake::close;
    if (how == "none")
        return Wake::none;
    throw lab::usage_error("--wake wants eventfd, shutdown, close or none, not '" + how + "'");
}

// "127.0.0.1:9002" or "[::1]:9002" -> an address; a usage error names the option.
lab::Address endpoint(std::string_view text, std::string_view option) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
        throw lab::usage_error(std::string(option) + " wants HOST:PORT (127.0.0.1:9002), not '" +
                               std::string(text) + "'");
    std::string host(text.substr(0, colon));
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    return lab::resolve(host, lab::parse_port(text.substr(colon + 1), option), SOCK_DGRAM);
}

// The notes encode gb2312 but decode utf-8, and crash on the peer's first Chinese line.
// We check instead.
bool is_utf8(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size();) {
        const auto lead = static_cast<unsigned char>(bytes[i]);
        const std::size_t extra = lead < 0x80                    ? 0
                                  : lead >= 0xc2 && lead <= 0xdf ? 1
                                  : lead >= 0xe0 && lead <= 0xef ? 2
                                  : lead >= 0xf0 && lead <= 0xf4 ? 3
                                                                 : 99;
        if (extra > 3 || bytes.size() - i <= extra)
            return false;
        for (std::size_t k = 1; k <= extra; ++k)
            if ((static_cast<unsigned char>(bytes[i + k]) & 0xc0) != 0x80)
                return false;
        i += extra + 1;
    }
    return true;
}
std::string shown(std::string_view bytes) {
    if (is_utf8(bytes))
        return std::string(bytes);
    std::string out = "(not UTF-8, " + std::to_string(bytes.size()) + " bytes) ";
    for (const unsigned char c : bytes) {
        char hex[5];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        out += hex;
    }
    return out;
}

// Receiver thread: print every datagram until the sender says stop. With --wake eventfd it waits in
// poll() on the socket and the eventfd, so a write to the eventfd always wakes it.
void receive_lines(int sock, int stop, Wake wake, const std::atomic<bool>& done) {
    // SOLUTION: loop: poll() socket and `stop` (eventfd), recvfrom, print "from HOST:PORT: T"
    std::vector<char> buf(65536);
    // [slide:receive]
    for (;;) {
        if (wake == Wake::eventfd) {
            std::array<pollfd, 2> ready{{{sock, POLLIN, 0}, {stop, POLLIN, 0}}};
            lab::check(::poll(ready.data(), ready.size(), -1), "poll");
            if (ready[1].revents != 0)
                return;
        }
        lab::Address from;
        const auto n = static_cast<std::size_t>(lab::check(
            ::recvfrom(sock, buf.data(), buf.size(), 0, from.get(), &from.len), "recvfrom"));
        if (done)
            return;  // shutdown() woke us: recvfrom returned 0, and no datagram came
        // [/slide:receive]
        lab::say("from ", lab::to_string(from), ": ", shown({buf.data(), n}));
    }
    // END
}

// Sender (the main thread): one datagram per stdin line, until EOF or /quit.
void send_lines(int sock, const lab::Address& peer) {
    for (std::string line; std::getline(std::cin, line) && line != quit_command;)
        lab::check(::sendto(sock, line.data(), line.size(), 0, peer.get(), peer.len),
                   "sendto " + lab::to_string(peer));
}

// The sender is done: get the receiver out of its blocking call, or (close, none) show that
// it stays stuck.
void wake_receiver(int sock, int stop, Wake wake, std::atomic<bool>& done) {
    // SOLUTION: eventfd: write 1; shutdown: done, shutdown(SHUT_RDWR); close: close(sock)
    // [slide:wake]
    if (wake == Wake::eventfd) {
        const std::uint64_t one = 1;
        lab::check(::write(stop, &one, sizeof one), "write(eventfd)");
        // [/slide:wake]
    } else if (wake == Wake::shutdown) {
        // On an unconnected UDP socket shutdown() fails with ENOTCONN, yet marks the socket shut
        // and wakes every thread blocked on it (inet_shutdown in net/ipv4/af_inet.c).
        done = true;
        if (::shutdown(sock, SHUT_RDWR) < 0)
            lab::say("shutdown: ", std::strerror(errno), ", and still it woke the receiver");
    } else if (wake == Wake::close) {
        // frees the fd number; the blocked recvfrom holds the socket itself and sleeps on
        ::close(sock);
        lab::say("closed the socket; the receiver is still blocked in recvfrom (close does not "
                 "wake it)");
    } else {
        lab::say(
            "not waking the receiver: it stays blocked in recvfrom and the program never ends");
    }
    // END
}

// One socket, a receiving thread, and this thread sending stdin until EOF or /quit.
int chat(const lab::Args& args) {
    lab::exit_on_signals();
    const Wake wake = parse_wake(args.get("--wake", "eventfd"));
    if (!args.value("--peer"))
        throw lab::usage_error("--peer HOST:PORT is required: where should lines go?");
    const lab::Address peer = endpoint(*args.value("--peer"), "--peer");
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);

    // One socket for both directions: bound, so the peer knows where to send.
    lab::Fd sock(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));
    lab::check(::bind(sock.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::announce_ready(sock.get());
    lab::say("chatting with ", lab::to_string(peer), "; type lines, end with Ctrl-D or ",
             quit_command);

    // An eventfd is a counter with an fd: the sender writes it, the receiver's poll() sees it.
    const lab::Fd stop(lab::check(::eventfd(0, EFD_CLOEXEC), "eventfd"));

    // Two threads share the socket: a recvfrom() blocked in one does not hold up a sendto() in
    // the other, and each call takes or gives one whole datagram. Both print through lab::say,
    // which hands each line to std::cout in one insertion, so lines never mix.
    // A receive error ends the program at once (exit 1): an exception escaping a std::thread
    // would call std::terminate, and nothing could wake the main thread out of getline().
    std::atomic<bool> done{false};
    std::exception_ptr send_error;
    std::thread receiver([&] {
        try {
            receive_lines(sock.get(), stop.get(), wake, done);
        } catch (const std::exception& e) {
            std::cerr << lab::error_message(program.name, e) << std::endl;
            std::_Exit(1);
        }
    });
    // A process-directed signal goes to any one thread that does not block it. With SIGINT and
    // SIGTERM blocked here (after the receiver inherited the open mask), they go to the
    // receiver, parked in poll(), whose handler exits at once. The main thread then never sees
    // EINTR in getline(), which reports it as the end of input (and ThreadSanitizer, which runs
    // a handler at its next interception point, would run it halfway through our orderly
    // shutdown).
    sigset_t ending;
    sigemptyset(&ending);
    sigaddset(&ending, SIGINT);
    sigaddset(&ending, SIGTERM);
    lab::check_en(::pthread_sigmask(SIG_BLOCK, &ending, nullptr), "pthread_sigmask");

    // Send until stdin ends, then wake the receiver and join it, whatever happened: a joinable
    // std::thread destroyed at exit aborts the program.
    try {
        send_lines(sock.get(), peer);
    } catch (...) {
        send_error = std::current_exception();
    }
    try {
        wake_receiver(sock.get(), stop.get(), wake, done);
    } catch (...) {
        if (!send_error)
            send_error = std::current_exception();
    }
    receiver.join();
    if (wake == Wake::close)
        sock.release();  // already closed: never close a number twice
    if (send_error)
        std::rethrow_exception(send_error);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, chat);
}
