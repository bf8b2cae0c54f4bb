// lab.hpp: the one header every socklab program includes. A lab's lesson calls stay raw, wrapped
// only by check(); a helper stands for calls a lab has shown raw (which calls, which lab: lab 01's
// README, "common/lab.hpp in one table"). Contract: README.md "The contract for your own programs";
// tests: tests/unit/test_lab.cpp.
//   errors:   check, check_gai, check_en, errno_name, hint_for, error_message
//   I/O:      Fd, write_all, peer_gone, say, quoted; exit_on_signals; run (the exit statuses)
//   address.hpp: Address, resolve, host_port, to_string, local_address, announce_ready
//   options.hpp: usage_error, parse_number, parse_port, Shown, Option, default_host, Program, Args
#pragma once
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "options.hpp"

namespace lab {

// A system call returned -1: throw its errno (read first, before anything can change it).
template <class T>
T check(T rc, std::string_view what) {
    if (rc == T(-1)) {
        const int err = errno;
        throw std::system_error(err, std::system_category(), std::string(what));
    }
    return rc;
}
// getaddrinfo()/getnameinfo() report through their return value, not errno.
inline const std::error_category& gai_category() {
    struct category : std::error_category {
        const char* name() const noexcept override { return "getaddrinfo"; }
        std::string message(int code) const override { return ::gai_strerror(code); }
    };
    static const category instance;  // categories are compared by address: exactly one instance
    return instance;
}
inline void check_gai(int rc, std::string_view what) {
    if (rc == EAI_SYSTEM)
        check(-1, what);
    if (rc != 0)
        throw std::system_error(rc, gai_category(), std::string(what));
}
// pthread-style calls return the error number instead of setting errno.
inline void check_en(int rc, std::string_view what) {
    if (rc != 0)
        throw std::system_error(rc, std::system_category(), std::string(what));
}

// One line of advice for the classic mistakes, or nothing.
inline std::string_view hint_for(int err, std::string_view what) {
    switch (err) {
    case EADDRINUSE:
        return "another socket holds this address: a server still running, or TIME_WAIT left by "
               "one that closed first (lab 10: SO_REUSEADDR)";
    case EACCES:
        return what.starts_with("bind")
                   ? "ports below 1024 need root (CAP_NET_BIND_SERVICE)"
                   : "sending to a broadcast address needs setsockopt(SO_BROADCAST) first (lab 06)";
    case ECONNREFUSED:
        return "nothing listens on that port (start the server first, check --host and --port)";
    case EADDRNOTAVAIL:
        return "no interface of this machine has that address: use 127.0.0.1 or one that `ip addr` "
               "lists";
    case EMFILE:
    case ENFILE:
        return "out of file descriptors: close every socket you are done with (a leak?) or raise "
               "`ulimit -n`";
    case EMSGSIZE:
        return "one UDP datagram carries at most 65507 bytes over IPv4 (65527 over IPv6)";
    case ECONNRESET:
    case EPIPE:
        return "the peer closed or reset the connection: drop that peer and carry on";
    default:
        return {};
    }
}
// The symbolic name of an errno value, "ECONNRESET" (strerrorname_np(3)), or "E?".
inline std::string errno_name(int err) {
    const char* name = ::strerrorname_np(err);
    return name ? name : "E?";
}

// "prog: what: strerror [ENAME]" and, where a classic mistake applies, "prog: hint: ...".
inline std::string error_message(std::string_view prog, const std::exception& e) {
    std::string line = std::string(prog) + ": " + e.what();
    const auto* se = dynamic_cast<const std::system_error*>(&e);
    if (!se)
        return line;
    const int code = se->code().value();
    if (se->code().category() == gai_category())
        return line + " [EAI " + std::to_string(code) + "]";
    line += " [" + errno_name(code) + "]";
    if (const auto hint = hint_for(code, e.what()); !hint.empty())
        line += "\n" + std::string(prog) + ": hint: " + std::string(hint);
    return line;
}

// Owns one fd; move-only; closes it once. Closing keeps errno so error paths stay truthful.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(other.release()) {}
    Fd& operator=(Fd&& other) noexcept {
        if (this != &other)
            reset(other.release());
        return *this;
    }
    ~Fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    // Linux frees the fd even when close() says EINTR: never retry
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            const int saved = errno;
            ::close(fd_);
            errno = saved;
        }
        fd_ = fd;
    }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

// write() to a non-socket (a pipe) with SIGPIPE blocked; only a SIGPIPE this write raised is taken.
inline ssize_t write_without_sigpipe(int fd, std::span<const std::byte> data) {
    sigset_t pipe_only, old, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    sigpending(&pending);
    const bool was_pending = sigismember(&pending, SIGPIPE);
    const ssize_t n = ::write(fd, data.data(), data.size());
    const int err = errno;
    if (const timespec zero{}; n < 0 && err == EPIPE && !was_pending)
        sigtimedwait(&pipe_only, nullptr, &zero);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    errno = err;
    return n;
}
// Send every byte however many calls it takes (send may write less than asked: see writen in
// UNP 3.9). Retries EINTR, waits in poll() when a non-blocking fd is full, never raises SIGPIPE.
inline void write_all(int fd, std::span<const std::byte> data) {
    while (!data.empty()) {
        ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK)
            n = write_without_sigpipe(fd, data);
        if (n >= 0) {
            data = data.subspan(static_cast<std::size_t>(n));
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            check(-1, "write");
        pollfd room{fd, POLLOUT, 0};
        if (::poll(&room, 1, -1) < 0 && errno != EINTR)
            check(-1, "poll");
    }
}
inline void write_all(int fd, std::string_view text) {
    write_all(fd, std::as_bytes(std::span(text)));
}

// The peer reset or closed the connection (ECONNRESET, EPIPE): end that peer only, not the program.
inline bool peer_gone(const std::system_error& e) noexcept {
    const int code = e.code().value();
    return e.code().category() == std::system_category() && (code == ECONNRESET || code == EPIPE);
}

// One whole line to stdout, flushed, so a pipe reader (a test, a grader) sees it at once.
template <class... Parts>
void say(const Parts&... parts) {
    std::ostringstream line;
    (line << ... << parts) << '\n';
    std::cout << line.str() << std::flush;
}
// Bytes as a C string literal: printable ASCII as is, \" \\ \n \t \r, any other byte as \xHH, so
// binary data stays on one line and nothing is hidden (lab 02 shows datagrams so, lab 07 a stream).
inline std::string quoted(std::string_view bytes) {
    std::string out = "\"";
    for (const unsigned char c : bytes) {
        if (c == '"' || c == '\\')
            out += {'\\', static_cast<char>(c)};
        else if (const char* esc = c == '\n'   ? "\\n"
                                   : c == '\t' ? "\\t"
                                   : c == '\r' ? "\\r"
                                               : nullptr)
            out += esc;
        else if (c >= 0x20 && c < 0x7f)
            out += static_cast<char>(c);
        else
            out += {'\\', 'x', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]};
    }
    return out + "\"";
}

// SIGINT and SIGTERM end the program with status 0. _exit() is async-signal-safe, and the
// kernel closes every fd of an exiting process, which sends each peer its FIN.
inline void exit_on_signals() {
    struct sigaction action = {};
    action.sa_handler = [](int) {
        ::_exit(0);
    };
    sigemptyset(&action.sa_mask);
    check(::sigaction(SIGINT, &action, nullptr), "sigaction(SIGINT)");
    check(::sigaction(SIGTERM, &action, nullptr), "sigaction(SIGTERM)");
}

// The whole exit-code policy: 0 ok, 1 runtime failure (one message line), 2 usage error.
template <class Body>
int run(const Program& program, int argc, char** argv, Body&& body) noexcept {
    try {
        const Args args(program, argc, argv);
        if (args.help()) {
            print_usage(std::cout, program);
            return 0;
        }
        return body(args);
    } catch (const usage_error& e) {
        std::cout.flush();
        std::cerr << program.name << ": " << e.what() << '\n';
        print_usage(std::cerr, program);
        return 2;
    } catch (const std::exception& e) {
        std::cout.flush();
        std::cerr << error_message(program.name, e) << std::endl;
        return 1;
    }
}

}  // namespace lab

#include "address.hpp"  // after check() and say(), which it uses
