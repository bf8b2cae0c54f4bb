// loadgen.cpp: the one load generator of the benchmark: ping-pong throughput, request/response
//              latency (closed or open loop), an accept storm, and a holder of idle connections.
//              One thread, one epoll loop, every echoed byte checked.
// Notes: the server sections (单进程服务器 ... epoll版本): their claims, measured
// Usage: loadgen --workload W1|W2|W4|hold [--host H] [--port P] [--connections N] [--size S]
//                [--duration-ms D] [--warmup-ms W] [--rate R] [--timeout-ms T] [--hold-ms H]
//                [--pause-ms M]
// Try:   ./echo_epoll --quiet &   then   ./loadgen --workload W2 --port 8088
//        ./loadgen --workload hold --connections 1000 &   makes the next W2 run a W3 point
// Output: a `measuring` line when the timed window opens, one RESULT line with key=value fields
//         when it closes (the README's Output section), then every connection is reset.
// Simplifications: the duration is checked after each epoll_wait (a window ends up to one
//          batch late); percentiles are nearest-rank over at most 4 million RTTs; the pattern
//          is the same for every connection (a server that swaps two clients' bytes of the same
//          offset goes unseen). Each connection ends with SO_LINGER {1, 0} (an RST), so a run
//          leaves no TIME_WAIT behind (lab 10).
// See also: epoll(7), clock_gettime(2) (CLOCK_MONOTONIC), getrusage(2), signalfd(2),
//          socket(7) (SO_LINGER), tcp(7) (TCP_NODELAY); muduo's pingpong client; netperf TCP_RR.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "lab.hpp"

namespace {

constexpr std::uint16_t default_port = 8088;  // the echo servers' default
constexpr int max_connections = 19'000;       // 20,000 fds per process, less a margin
constexpr std::size_t default_w1_size = 16 << 10;
constexpr std::size_t default_rr_size = 1;
constexpr std::size_t max_size = 1 << 20;
constexpr int default_duration_ms = 3000;
constexpr int default_warmup_ms = 500;
constexpr int default_timeout_ms = 10'000;
constexpr int default_hold_ms = 600'000;  // a holder whose driver died goes away by itself
constexpr int default_pause_ms = 0;
constexpr int connects_in_flight = 4;  // connections proving themselves at once (see connect_all)
constexpr std::size_t max_samples = 4 << 20;
constexpr std::int64_t retry_ns = 10'000'000;  // W4: a connect() that failed at once, retried
constexpr int max_events = 256;

const std::string port_help = "the server's port (default " + std::to_string(default_port) + ")";
const std::string conn_help = "W1 sessions, W2 connections, W4 concurrent connectors, idle "
                              "connections to hold (default 1, at most " +
                              std::to_string(max_connections) + ")";
const std::string size_help = "bytes per message (default " + std::to_string(default_w1_size) +
                              " for W1, " + std::to_string(default_rr_size) + " otherwise)";
const std::array options{
    lab::Option{"--workload", "W",
                "W1 ping-pong, W2 request/response (the default), W4 accept "
                "storm, or hold: open N connections and keep them idle"},
    lab::Option{"--host", "H", "the server's address: loopback only (default {})",
                lab::default_host},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--connections", "N", conn_help},
    lab::Option{"--size", "S", size_help},
    lab::Option{"--duration-ms", "D", "the timed window (default {})", default_duration_ms},
    lab::Option{"--warmup-ms", "W", "run this long before the window opens (default {})",
                default_warmup_ms},
    lab::Option{"--rate", "R",
                "W2 open loop: R requests per second in all, each timed from its "
                "scheduled send (default 0: closed loop)"},
    lab::Option{"--timeout-ms", "T",
                "give up connecting (or on one silent echo) after T ms "
                "(default {})",
                default_timeout_ms},
    lab::Option{"--hold-ms", "H",
                "hold: release the connections after H ms even without SIGTERM "
                "(default {})",
                default_hold_ms},
    lab::Option{"--pause-ms", "M",
                "keep the connections open, idle, M ms after the RESULT line, while a "
                "driver reads the server's /proc files (default {})",
                default_pause_ms},
};
const lab::Program program{"loadgen", "Loads a TCP echo server and measures it.", options};

// ---- clocks, CPU, the byte pattern -------------------------------------------------------------

std::int64_t now_ns() {
    timespec t{};
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}
std::int64_t cpu_ns() {  // this process's user + system time
    rusage ru{};
    lab::check(::getrusage(RUSAGE_SELF, &ru), "getrusage");
    const auto ns = [](const timeval& tv) {
        return std::int64_t{tv.tv_sec} * 1'000'000'000 + std::int64_t{tv.tv_usec} * 1000;
    };
    return ns(ru.ru_utime) + ns(ru.ru_stime);
}
// The byte at offset k of a stream: not periodic in any power of two a server might cut at.
char pattern(std::uint64_t k) {
    return static_cast<char>((k * 131 + (k >> 8) * 7 + (k >> 16) * 3 + 13) & 0xff);
}
std::string hex(char c) {
    std::array<char, 8> out{};
    std::snprintf(out.data(), out.size(), "0x%02x", static_cast<unsigned char>(c));
    return out.data();
}
std::string fixed(double v, int digits = 1) {
    std::array<char, 32> out{};
    std::snprintf(out.data(), out.size(), "%.*f", digits, v);
    return out.data();
}

// A wrong byte came back: the run is void. lab::run prints the line and exits 1, as it does for
// a connection the server closed while its echo was due (lost()).
[[noreturn]] void wrong_byte(std::size_t conn, std::uint64_t offset, char sent, char got) {
    throw std::runtime_error("echo mismatch on connection " + std::to_string(conn) + " at byte " +
                             std::to_string(offset) + ": sent " + hex(sent) + ", got " + hex(got));
}
[[noreturn]] void lost(std::size_t conn, const std::string& what) {
    throw std::runtime_error("connection " + std::to_string(conn) + ": the server " + what);
}

// ---- sockets and the loop ----------------------------------------------------------------------

bool loopback(const lab::Address& a) {
    if (a.family() == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(a.get());
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a.get());
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

// A non-blocking socket with TCP_NODELAY whose connect() is under way (or done, or refused:
// the caller reads SO_ERROR once it is writable).
lab::Fd start_connect(const lab::Address& to) {
    lab::Fd fd(
        lab::check(::socket(to.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket"));
    const int on = 1;
    lab::check(::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on),
               "setsockopt(TCP_NODELAY)");
    if (::connect(fd.get(), to.get(), to.len) < 0 && errno != EINPROGRESS) {
        lab::check(-1, "connect " + lab::to_string(to));
    }
    return fd;
}
int pending_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    lab::check(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len), "getsockopt(SO_ERROR)");
    return err;
}
// close() that sends an RST: no FIN handshake, no TIME_WAIT on either side.
void reset(lab::Fd& fd) {
    const linger abort{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort, sizeof abort);
    fd.reset();
}
bool again() {
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

struct Loop {
    lab::Fd ep{lab::check(::epoll_create1(EPOLL_CLOEXEC), "epoll_create1")};
    std::array<epoll_event, max_events> events{};

    void watch(int op, int fd, std::uint32_t mask, std::uint64_t key) const {
        epoll_event ev{};
        ev.events = mask;
        ev.data.u64 = key;
        lab::check(::epoll_ctl(ep.get(), op, fd, &ev), "epoll_ctl");
    }
    // The events of one wait of at most `ns` nanoseconds, capped at one second (EINTR: none).
    // epoll_pwait2(): a timeout finer than epoll_wait()'s milliseconds, so that an open loop
    // sleeps until its next request is due instead of spinning through the last millisecond.
    std::span<epoll_event> wait(std::int64_t ns) {
        const std::int64_t capped = std::clamp<std::int64_t>(ns, 0, 1'000'000'000);
        const timespec timeout{capped / 1'000'000'000, capped % 1'000'000'000};
        const int n = ::epoll_pwait2(ep.get(), events.data(), max_events, &timeout, nullptr);
        if (n < 0 && errno == EINTR) {
            return {};
        }
        return std::span(events).first(static_cast<std::size_t>(lab::check(n, "epoll_wait")));
    }
};

// N connections, each established and proven served: it sends one byte and reads it back
// before it counts. At most connects_in_flight wait at a time, so a server with a small listen
// backlog (the notes' listen(5)) is never handed more than it can queue: an overflowing accept
// queue drops SYNs, and their retries come 1, 3, 7 s later (tcp(7)). A refused connect, a
// closed connection or a wrong byte ends the run, and so does the deadline.
std::vector<lab::Fd> connect_all(const lab::Address& to, int n, std::int64_t deadline) {
    std::vector<lab::Fd> fds(static_cast<std::size_t>(n));
    std::vector<bool> probing(fds.size(), false);  // connected, its byte sent, not yet back
    Loop loop;
    std::size_t next = 0, pending = 0, done = 0;
    while (done < fds.size()) {
        for (; pending < connects_in_flight && next < fds.size(); ++next, ++pending) {
            fds[next] = start_connect(to);
            loop.watch(EPOLL_CTL_ADD, fds[next].get(), EPOLLOUT, next);
        }
        if (now_ns() > deadline) {
            throw std::runtime_error("only " + std::to_string(done) + " of " + std::to_string(n) +
                                     " connections were established and echoed in time");
        }
        for (const epoll_event& e : loop.wait(100'000'000)) {
            const std::size_t i = e.data.u64;
            const int fd = fds[i].get();
            const char probe = pattern(i);
            if (!probing[i]) {
                if (const int err = pending_error(fd); err != 0) {
                    errno = err;
                    lab::check(-1, "connect " + lab::to_string(to));
                }
                lab::check(::send(fd, &probe, 1, MSG_NOSIGNAL), "send");
                loop.watch(EPOLL_CTL_MOD, fd, EPOLLIN, i);
                probing[i] = true;
                continue;
            }
            char byte = 0;
            const ssize_t got = ::recv(fd, &byte, 1, 0);
            if (got < 0 && again()) {
                continue;
            }
            if (got == 0) {
                lost(i, "closed it before its first echo");
            }
            lab::check(got, "recv");
            if (byte != probe) {
                wrong_byte(i, 0, probe, byte);
            }
            lab::check(::epoll_ctl(loop.ep.get(), EPOLL_CTL_DEL, fd, nullptr), "epoll_ctl(DEL)");
            --pending;
            ++done;
        }
    }
    return fds;
}

// The timed window: a warm-up, then `duration` during which the counters count.
struct Window {
    std::int64_t open, close, cpu_at_open = 0;
    bool counting = false;
    Window(int warmup_ms, int duration_ms)
        : open(now_ns() + std::int64_t{warmup_ms} * 1'000'000),
          close(open + std::int64_t{duration_ms} * 1'000'000) {}
    // Called after each wait: opens the window once (true while it is open), false once closed.
    bool tick(std::int64_t t, int duration_ms) {
        if (!counting && t >= open) {
            counting = true;
            cpu_at_open = cpu_ns();
            lab::say("measuring ", duration_ms, " ms");
        }
        return t < close;
    }
    std::int64_t left(std::int64_t t) const { return (counting ? close : open) - t; }
    double seconds() const { return static_cast<double>(close - open) / 1e9; }
    std::string client_cpu() const {
        return fixed(
            static_cast<double>(cpu_ns() - cpu_at_open) / static_cast<double>(close - open), 2);
    }
};

struct Settings {
    lab::Address to;
    int connections, duration_ms, warmup_ms, timeout_ms, hold_ms, pause_ms;
    std::size_t size;
    long rate;
};

// After the RESULT line: the connections stay open and idle for --pause-ms, so that a thread or
// a process per connection is still there when the driver reads the server's CPU time.
void pause_after(const Settings& s) {
    const timespec pause{s.pause_ms / 1000, (s.pause_ms % 1000) * 1'000'000L};
    ::nanosleep(&pause, nullptr);  // a signal ends it early: the program exits anyway
}

// ---- W1: ping-pong throughput ------------------------------------------------------------------

// Every session sends S bytes, then sends back whatever arrives: S bytes circulate per session,
// so at most S wait to be sent again. The stream is the pattern's first S bytes over and over,
// kept twice in `block` so that any S of them starting anywhere are one contiguous run.
struct Session {
    lab::Fd fd;
    std::uint64_t sent = 0, received = 0;  // stream offsets
    bool watching_out = false;
};

int pingpong(const Settings& s) {
    std::string block(2 * s.size, '\0');
    for (std::size_t i = 0; i < block.size(); ++i) {
        block[i] = pattern(i % s.size);
    }
    const std::int64_t deadline = now_ns() + std::int64_t{s.timeout_ms} * 1'000'000;
    std::vector<Session> sessions;
    for (lab::Fd& fd : connect_all(s.to, s.connections, deadline)) {
        sessions.push_back(Session{std::move(fd)});
    }
    Loop loop;
    std::string buf(s.size, '\0');
    std::uint64_t bytes = 0;  // read while the window is open
    const auto flush = [&](Session& c, std::size_t key) {
        while (c.sent < c.received + s.size) {
            const std::size_t at = c.sent % s.size;
            const std::size_t len = static_cast<std::size_t>(c.received + s.size - c.sent);
            const ssize_t n = ::send(c.fd.get(), block.data() + at, len, MSG_NOSIGNAL);
            if (n < 0 && again()) {
                break;
            }
            c.sent += static_cast<std::uint64_t>(lab::check(n, "send"));
        }
        const bool want_out = c.sent < c.received + s.size;
        if (want_out != c.watching_out) {
            c.watching_out = want_out;
            loop.watch(EPOLL_CTL_MOD, c.fd.get(), EPOLLIN | (want_out ? EPOLLOUT : 0u), key);
        }
    };
    for (std::size_t i = 0; i < sessions.size(); ++i) {
        loop.watch(EPOLL_CTL_ADD, sessions[i].fd.get(), EPOLLIN, i);
        flush(sessions[i], i);
    }
    Window w(s.warmup_ms, s.duration_ms);
    for (std::int64_t t = now_ns(); w.tick(t, s.duration_ms); t = now_ns()) {
        for (const epoll_event& e : loop.wait(w.left(t))) {
            Session& c = sessions[e.data.u64];
            if (e.events & EPOLLIN) {
                const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
                if (n == 0) {
                    lost(e.data.u64, "closed it after " + std::to_string(c.received) + " bytes");
                }
                if (n < 0 && again()) {
                    continue;
                }
                const auto got = static_cast<std::size_t>(lab::check(n, "recv"));
                if (c.received + got > c.sent) {
                    lost(e.data.u64, "sent back more bytes than it was sent");
                }
                // SOLUTION: compare the bytes with the pattern at their stream offset; wrong_byte()
                const char* want = block.data() + c.received % s.size;
                if (std::memcmp(buf.data(), want, got) != 0) {
                    const auto at = static_cast<std::size_t>(
                        std::mismatch(buf.data(), buf.data() + got, want).first - buf.data());
                    wrong_byte(e.data.u64, c.received + at, want[at], buf[at]);
                }
                // END
                c.received += got;
                bytes += w.counting ? got : 0;
            }
            flush(c, e.data.u64);
        }
    }
    const auto read = static_cast<double>(bytes);
    lab::say("RESULT workload=W1 connections=", s.connections, " size=", s.size,
             " seconds=", fixed(w.seconds(), 3), " bytes=", static_cast<std::uint64_t>(read),
             " mib_s=", fixed(read / w.seconds() / (1 << 20)),
             " msgs_s=", fixed(read / static_cast<double>(s.size) / w.seconds()),
             " mismatches=0 client_cpu=", w.client_cpu());
    pause_after(s);
    for (Session& c : sessions) {
        reset(c.fd);
    }
    return 0;
}

// ---- W2: request/response latency --------------------------------------------------------------

// One request of S bytes in flight per connection; its RTT runs from the send (closed loop) or
// from the moment it was due (open loop: a late send counts against the server, so a stall
// cannot hide the requests it delayed).
struct Caller {
    lab::Fd fd;
    std::uint64_t seq = 0;  // requests this connection has completed
    std::size_t sent = 0, got = 0;
    std::int64_t started = 0;  // when this request's clock started
    bool busy = false, watching_out = false;
};

std::string percentiles(std::vector<std::int64_t>& rtt) {
    // SOLUTION: nearest rank: the p-th percentile of n sorted RTTs is the ceil(p*n)-th one
    std::sort(rtt.begin(), rtt.end());
    const auto at = [&](double p) {
        if (rtt.empty()) {
            return std::string("0");
        }
        const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(rtt.size())));
        return fixed(static_cast<double>(rtt[std::max<std::size_t>(rank, 1) - 1]) / 1000.0);
    };
    return "p50_us=" + at(0.50) + " p90_us=" + at(0.90) + " p99_us=" + at(0.99) +
           " p999_us=" + at(0.999) + " max_us=" + at(1.0);
    // END
}

int request_response(const Settings& s) {
    const std::int64_t deadline = now_ns() + std::int64_t{s.timeout_ms} * 1'000'000;
    std::vector<Caller> callers;
    for (lab::Fd& fd : connect_all(s.to, s.connections, deadline)) {
        callers.push_back(Caller{std::move(fd)});
    }
    Loop loop;
    std::string out(s.size, '\0'), in(s.size, '\0');
    std::vector<std::int64_t> rtt;
    rtt.reserve(std::min<std::size_t>(max_samples, 1 << 16));
    std::uint64_t done = 0;
    const std::int64_t period = s.rate > 0 ? 1'000'000'000 / s.rate : 0;
    std::int64_t next_due = now_ns();  // open loop: when the next request is due
    const auto offset = [&](const Caller& c, std::size_t key) {
        return (c.seq * callers.size() + key) * s.size;  // where this request is in the pattern
    };
    const auto push = [&](Caller& c, std::size_t key) {
        const std::uint64_t base = offset(c, key);
        for (std::size_t i = c.sent; i < s.size; ++i) {
            out[i] = pattern(base + i);
        }
        while (c.sent < s.size) {
            const ssize_t n =
                ::send(c.fd.get(), out.data() + c.sent, s.size - c.sent, MSG_NOSIGNAL);
            if (n < 0 && again()) {
                break;
            }
            c.sent += static_cast<std::size_t>(lab::check(n, "send"));
        }
        if (const bool want_out = c.sent < s.size; want_out != c.watching_out) {
            c.watching_out = want_out;
            loop.watch(EPOLL_CTL_MOD, c.fd.get(), EPOLLIN | (want_out ? EPOLLOUT : 0u), key);
        }
    };
    const auto start = [&](Caller& c, std::size_t key, std::int64_t clock) {
        c.busy = true;
        c.sent = c.got = 0;
        c.started = clock;
        push(c, key);
    };
    for (std::size_t i = 0; i < callers.size(); ++i) {
        loop.watch(EPOLL_CTL_ADD, callers[i].fd.get(), EPOLLIN, i);
    }
    Window w(s.warmup_ms, s.duration_ms);
    for (std::int64_t t = now_ns(); w.tick(t, s.duration_ms); t = now_ns()) {
        // [slide:open-loop]
        for (std::size_t i = 0; i < callers.size(); ++i) {  // idle callers take the due requests
            if (!callers[i].busy && (period == 0 || next_due <= t)) {
                start(callers[i], i, period == 0 ? now_ns() : next_due);
                next_due += period;
            }
        }
        // [/slide:open-loop]
        const std::int64_t wait = period > 0 ? std::min(w.left(t), next_due - t) : w.left(t);
        for (const epoll_event& e : loop.wait(wait)) {
            Caller& c = callers[e.data.u64];
            if (e.events & EPOLLOUT) {
                push(c, e.data.u64);
            }
            if (!(e.events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                continue;
            }
            const ssize_t n = ::recv(c.fd.get(), in.data(), s.size - c.got, 0);
            if (n == 0 || (n > 0 && !c.busy)) {
                lost(e.data.u64, (n == 0 ? "closed it" : "sent bytes nobody asked for") +
                                     std::string(" after ") + std::to_string(c.seq) + " echoes");
            }
            if (n < 0 && again()) {
                continue;
            }
            const auto got = static_cast<std::size_t>(lab::check(n, "recv"));
            const std::uint64_t base = offset(c, e.data.u64) + c.got;
            for (std::size_t i = 0; i < got; ++i) {
                if (in[i] != pattern(base + i)) {
                    wrong_byte(e.data.u64, base + i, pattern(base + i), in[i]);
                }
            }
            if ((c.got += got) < s.size) {
                continue;
            }
            // [slide:rtt-sample]
            const std::int64_t end = now_ns();
            if (w.counting && end < w.close && rtt.size() < max_samples) {
                rtt.push_back(end - c.started);
                ++done;
            }
            // [/slide:rtt-sample]
            c.busy = false;
            ++c.seq;
            if (period == 0) {
                start(c, e.data.u64, now_ns());
            }
        }
    }
    const std::string cpu = w.client_cpu();
    lab::say("RESULT workload=W2 connections=", s.connections, " size=", s.size, " rate=", s.rate,
             " seconds=", fixed(w.seconds(), 3), " transactions=", done,
             " tps=", fixed(static_cast<double>(done) / w.seconds()), " ", percentiles(rtt),
             " mismatches=0 client_cpu=", cpu);
    pause_after(s);
    for (Caller& c : callers) {
        reset(c.fd);
    }
    return 0;
}

// ---- W4: accept storm --------------------------------------------------------------------------

// C connectors, each over and over: connect, send one byte, read its echo, reset. A refused,
// reset or closed attempt is a failure and the connector starts again; a wrong byte ends the run.
struct Connector {
    lab::Fd fd;
    std::int64_t began = 0;
    std::uint64_t serial = 0;  // which attempt this is, in all: the byte it sends
    bool connected = false;
};

int storm(const Settings& s) {
    Loop loop;
    std::vector<Connector> slots(static_cast<std::size_t>(s.connections));
    std::vector<std::int64_t> connect_times;
    std::uint64_t attempts = 0, accepted = 0, failures = 0;
    const std::int64_t give_up = std::int64_t{s.timeout_ms} * 1'000'000;
    Window w(s.warmup_ms, s.duration_ms);
    const auto begin = [&](Connector& c, std::size_t key) {
        c = Connector{lab::Fd(), now_ns(), attempts++, false};
        try {
            c.fd = start_connect(s.to);
        } catch (const std::system_error&) {  // refused at once, or out of ports: retry soon
            failures += w.counting ? 1 : 0;
            return;
        }
        loop.watch(EPOLL_CTL_ADD, c.fd.get(), EPOLLOUT, key);
    };
    const auto again_from_scratch = [&](Connector& c, std::size_t key, bool failed) {
        failures += failed && w.counting ? 1 : 0;
        reset(c.fd);
        begin(c, key);
    };
    for (std::size_t i = 0; i < slots.size(); ++i) {
        begin(slots[i], i);
    }
    for (std::int64_t t = now_ns(); w.tick(t, s.duration_ms); t = now_ns()) {
        for (const epoll_event& e : loop.wait(std::min<std::int64_t>(w.left(t), retry_ns))) {
            Connector& c = slots[e.data.u64];
            if (!c.connected) {
                if (pending_error(c.fd.get()) != 0) {
                    again_from_scratch(c, e.data.u64, true);
                    continue;
                }
                c.connected = true;
                if (w.counting && connect_times.size() < max_samples) {
                    connect_times.push_back(now_ns() - c.began);
                }
                const char byte = pattern(c.serial);
                if (::send(c.fd.get(), &byte, 1, MSG_NOSIGNAL) != 1) {
                    again_from_scratch(c, e.data.u64, true);
                    continue;
                }
                loop.watch(EPOLL_CTL_MOD, c.fd.get(), EPOLLIN, e.data.u64);
                continue;
            }
            char byte = 0;
            const ssize_t n = ::recv(c.fd.get(), &byte, 1, 0);
            if (n < 0 && again()) {
                continue;
            }
            if (n == 1 && byte != pattern(c.serial)) {
                wrong_byte(e.data.u64, 0, pattern(c.serial), byte);
            }
            accepted += n == 1 && w.counting ? 1 : 0;
            again_from_scratch(c, e.data.u64, n != 1);
        }
        for (std::size_t i = 0; i < slots.size(); ++i) {  // a stuck attempt is a failure
            const std::int64_t age = now_ns() - slots[i].began;
            if (slots[i].fd ? age > give_up : age > retry_ns) {
                again_from_scratch(slots[i], i, static_cast<bool>(slots[i].fd));
            }
        }
    }
    const std::string cpu = w.client_cpu();
    std::sort(connect_times.begin(), connect_times.end());
    const auto p99 =
        connect_times.empty()
            ? 0.0
            : static_cast<double>(connect_times[(connect_times.size() * 99 + 99) / 100 - 1]);
    lab::say("RESULT workload=W4 connections=", s.connections, " seconds=", fixed(w.seconds(), 3),
             " accepted=", accepted,
             " accepts_s=", fixed(static_cast<double>(accepted) / w.seconds()),
             " failures=", failures, " connect_p99_us=", fixed(p99 / 1000.0),
             " mismatches=0 client_cpu=", cpu);
    pause_after(s);
    for (Connector& c : slots) {
        reset(c.fd);
    }
    return 0;
}

// ---- hold: N idle connections, for W3 ----------------------------------------------------------

// Opens N connections (connect_all: each has echoed one byte, which proves the server serves it,
// not only that the kernel queued it); prints the HOLDING line; then waits, idle, for SIGTERM or
// SIGINT (a signalfd in the same epoll set) or --hold-ms, and resets every connection.
int hold(const Settings& s) {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    lab::check_en(::pthread_sigmask(SIG_BLOCK, &stop, nullptr), "pthread_sigmask");
    lab::Fd signals(lab::check(::signalfd(-1, &stop, SFD_CLOEXEC), "signalfd"));
    const std::int64_t deadline = now_ns() + std::int64_t{s.timeout_ms} * 1'000'000;
    std::vector<lab::Fd> fds = connect_all(s.to, s.connections, deadline);
    Loop loop;
    const std::uint64_t signal_key = fds.size();
    loop.watch(EPOLL_CTL_ADD, signals.get(), EPOLLIN, signal_key);
    for (std::size_t i = 0; i < fds.size(); ++i) {
        loop.watch(EPOLL_CTL_ADD, fds[i].get(), EPOLLRDHUP, i);  // only its end, if it comes
    }
    lab::say("HOLDING ", fds.size(), " idle connections to ", lab::to_string(s.to));
    std::size_t closed_by_server = 0;
    bool stopped = false;
    const std::int64_t release = now_ns() + std::int64_t{s.hold_ms} * 1'000'000;
    for (std::int64_t t = now_ns(); !stopped && t < release; t = now_ns()) {
        for (const epoll_event& e : loop.wait(release - t)) {
            if (e.data.u64 == signal_key) {
                stopped = true;
                break;
            }
            ++closed_by_server;  // RDHUP/HUP: the server let an idle one go; stop watching it
            lab::check(::epoll_ctl(loop.ep.get(), EPOLL_CTL_DEL, fds[e.data.u64].get(), nullptr),
                       "epoll_ctl(DEL)");
        }
    }
    for (lab::Fd& fd : fds) {
        reset(fd);
    }
    lab::say("released ", fds.size(), " connections (", closed_by_server,
             " closed by the server meanwhile)");
    return 0;
}

// ---- the command line --------------------------------------------------------------------------

int serve(const lab::Args& args) {
    const std::string workload = args.get("--workload", "W2");
    if (workload != "W1" && workload != "W2" && workload != "W4" && workload != "hold") {
        throw lab::usage_error("--workload wants W1, W2, W4 or hold, not '" + workload +
                               "' (W3 is W2 while a `--workload hold` process holds idle ones)");
    }
    Settings s{
        lab::resolve(args.get("--host", lab::default_host), args.port(default_port), SOCK_STREAM),
        args.number("--connections", 1, max_connections, 1),
        args.number("--duration-ms", 1, 3'600'000, default_duration_ms),
        args.number("--warmup-ms", 0, 600'000, default_warmup_ms),
        args.number("--timeout-ms", 1, 3'600'000, default_timeout_ms),
        args.number("--hold-ms", 1, 86'400'000, default_hold_ms),
        args.number("--pause-ms", 0, 60'000, default_pause_ms),
        args.number<std::size_t>("--size", 1, max_size,
                                 workload == "W1" ? default_w1_size : default_rr_size),
        args.number<long>("--rate", 0, 10'000'000, 0)};
    if (!loopback(s.to)) {
        throw lab::usage_error("sends only to loopback (127.0.0.0/8 or ::1), not " +
                               lab::to_string(s.to));
    }
    if (s.rate > 0 && workload != "W2") {
        throw lab::usage_error("--rate is for W2 (the open loop) only");
    }
    if (workload == "hold") {
        return hold(s);
    }
    lab::exit_on_signals();
    return workload == "W1" ? pingpong(s) : workload == "W2" ? request_response(s) : storm(s);
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
