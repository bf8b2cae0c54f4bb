// test_lab.cpp: doctest unit tests of common/lab.hpp, always on real fds (pipe, socketpair).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "echo.hpp"
#include "lab.hpp"

namespace {

bool is_open(int fd) {
    return ::fcntl(fd, F_GETFD) != -1;
}

std::array<lab::Fd, 2> make_pipe() {
    int fds[2];
    lab::check(::pipe(fds), "pipe");
    return {lab::Fd(fds[0]), lab::Fd(fds[1])};
}

std::array<lab::Fd, 2> make_socketpair() {
    int fds[2];
    lab::check(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), "socketpair");
    return {lab::Fd(fds[0]), lab::Fd(fds[1])};
}

// Read until EOF; the bytes as a string.
std::string read_all(int fd) {
    std::string out;
    std::array<char, 65536> buf;
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return out;
        out.append(buf.data(), static_cast<std::size_t>(n));
    }
}

std::string pattern(std::size_t size) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
        s[i] = static_cast<char>('a' + i * 7 % 26);
    return s;
}

// Runs body with std::cout or std::cerr captured.
template <class F>
std::string capture(std::ostream& stream, F body) {
    std::ostringstream sink;
    auto* old = stream.rdbuf(sink.rdbuf());
    body();
    stream.rdbuf(old);
    return sink.str();
}

bool sigpipe_pending() {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGPIPE);
}

}  // namespace

TEST_CASE("check returns the value on success and throws errno with the call's name on -1") {
    auto [r, w] = make_pipe();
    CHECK(lab::check(::dup(r.get()), "dup") > 2);
    try {
        lab::check(::close(-1), "close(-1)");
        FAIL("check did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EBADF);
        CHECK(std::string(e.what()).starts_with("close(-1)"));
    }
}

TEST_CASE("check keeps the errno of the failing call even if errno changes later") {
    errno = 0;
    const ssize_t rc = ::read(-1, nullptr, 0);  // EBADF
    try {
        lab::check(rc, "read");
        FAIL("check did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EBADF);
    }
}

TEST_CASE("Fd::reset and the destructor preserve errno") {
    auto [r, w] = make_pipe();
    errno = EAGAIN;
    r.reset();
    CHECK(errno == EAGAIN);
    {
        lab::Fd moved = std::move(w);
        errno = ECONNRESET;
    }
    CHECK(errno == ECONNRESET);
}

TEST_CASE("check_gai and check_en report their own error codes, not errno") {
    addrinfo* list = nullptr;
    const int rc = ::getaddrinfo("not an address", "80", nullptr, &list);
    REQUIRE(rc != 0);
    CHECK_THROWS_AS(lab::check_gai(rc, "getaddrinfo"), std::system_error);
    errno = 0;
    try {
        lab::check_en(EAGAIN, "pthread_create");
        FAIL("check_en did not throw");
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == EAGAIN);
    }
    CHECK_NOTHROW(lab::check_en(0, "pthread_create"));
}

TEST_CASE("error_message: 'prog: what: strerror [ENAME]' plus a hint for classic mistakes") {
    const std::system_error in_use(EADDRINUSE, std::system_category(), "bind 127.0.0.1:8088");
    const std::string msg = lab::error_message("tcp_server", in_use);
    CHECK(
        msg.starts_with("tcp_server: bind 127.0.0.1:8088: Address already in use [EADDRINUSE]\n"));
    CHECK(msg.find("tcp_server: hint: ") != std::string::npos);
    CHECK(msg.find("SO_REUSEADDR") != std::string::npos);

    const std::system_error broadcast(EACCES, std::system_category(),
                                      "sendto 127.255.255.255:21567");
    CHECK(lab::error_message("p", broadcast).find("SO_BROADCAST") != std::string::npos);
    const std::system_error low_port(EACCES, std::system_category(), "bind 127.0.0.1:80");
    CHECK(lab::error_message("p", low_port).find("root") != std::string::npos);

    const std::system_error plain(ENOENT, std::system_category(), "open");
    CHECK(lab::error_message("p", plain) == "p: open: No such file or directory [ENOENT]");
    CHECK(lab::error_message("p", std::runtime_error("bad reply")) == "p: bad reply");
}

TEST_CASE("Fd is move-only and closes exactly once") {
    auto [r, w] = make_pipe();
    const int raw = r.get();
    lab::Fd other = std::move(r);
    CHECK_FALSE(r);
    CHECK(other.get() == raw);
    CHECK(is_open(raw));
    other = lab::Fd();
    CHECK_FALSE(is_open(raw));
    const int kept = w.release();
    CHECK_FALSE(w);
    CHECK(is_open(kept));
    ::close(kept);
    static_assert(!std::is_copy_constructible_v<lab::Fd>);
}

TEST_CASE("write_all delivers everything through forced partial writes on a non-blocking socket") {
    auto [a, b] = make_socketpair();
    const int small = 4096;
    lab::check(::setsockopt(a.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), "setsockopt");
    lab::check(::fcntl(a.get(), F_SETFL, O_NONBLOCK), "fcntl");
    const std::string data = pattern(1 << 20);

    // Precondition: one send() really is short here, so the loop in write_all is exercised.
    const ssize_t first = ::send(a.get(), data.data(), data.size(), MSG_NOSIGNAL);
    REQUIRE(first > 0);
    REQUIRE(static_cast<std::size_t>(first) < data.size());

    std::string received;
    std::thread reader([&, fd = b.get()] { received = read_all(fd); });
    lab::write_all(a.get(), std::string_view(data).substr(static_cast<std::size_t>(first)));
    a.reset();
    reader.join();
    CHECK(received.size() == data.size());
    CHECK(received == data);
}

TEST_CASE("write_all retries after EINTR from a handler installed without SA_RESTART") {
    struct sigaction action {};
    action.sa_handler = [](int) {
    };
    sigemptyset(&action.sa_mask);
    struct sigaction old {};
    lab::check(::sigaction(SIGUSR1, &action, &old), "sigaction");

    auto [r, w] = make_pipe();
    const std::string data = pattern(4 << 20);
    std::atomic<bool> done = false;
    std::thread writer([&] {
        lab::write_all(w.get(), data);
        w.reset();
        done = true;
    });
    for (int i = 0; i < 20 && !done; ++i) {  // interrupt the blocked writer several times
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        pthread_kill(writer.native_handle(), SIGUSR1);
    }
    const std::string received = read_all(r.get());
    writer.join();
    ::sigaction(SIGUSR1, &old, nullptr);
    CHECK(received == data);
}

TEST_CASE("write_all to a closed peer throws EPIPE and never raises SIGPIPE") {
    SUBCASE("socket") {
        auto [a, b] = make_socketpair();
        b.reset();
        try {
            lab::write_all(a.get(), "hello");
            FAIL("no error");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EPIPE);
        }
    }
    SUBCASE("pipe") {
        auto [r, w] = make_pipe();
        r.reset();
        try {
            lab::write_all(w.get(), "hello");
            FAIL("no error");
        } catch (const std::system_error& e) {
            CHECK(e.code().value() == EPIPE);
        }
    }
    // had SIGPIPE been raised with the default action, we would be dead
    CHECK_FALSE(sigpipe_pending());
}

TEST_CASE("quoted shows any bytes as a one-line C string literal") {
    CHECK(lab::quoted("hello") == "\"hello\"");
    CHECK(lab::quoted(std::string_view("a\0\"\\\n\t\r\x7f\xff", 9)) ==
          R"("a\x00\"\\\n\t\r\x7f\xff")");
    CHECK(lab::quoted("") == "\"\"");
}

TEST_CASE("parse_port accepts 0..65535 and names the option in its error") {
    CHECK(lab::parse_port("8088") == 8088);
    CHECK(lab::parse_port("0") == 0);
    CHECK(lab::parse_port("65535") == 65535);
    for (const char* bad : {"65536", "-1", "", "80x", "abc", " 80"}) {
        try {
            lab::parse_port(bad);
            FAIL("accepted " << bad);
        } catch (const lab::usage_error& e) {
            CHECK(std::string(e.what()).find("--port") != std::string::npos);
            CHECK(std::string(e.what()).find(std::string("'") + bad + "'") != std::string::npos);
        }
    }
    CHECK(lab::parse_number<int>("1024", "--size", 0, 65507) == 1024);
    CHECK_THROWS_AS(lab::parse_number<int>("70000", "--size", 0, 65507), lab::usage_error);
}

TEST_CASE("resolve and to_string handle IPv4 and IPv6") {
    const lab::Address v4 = lab::resolve("127.0.0.1", 8088, SOCK_DGRAM);
    CHECK(v4.family() == AF_INET);
    CHECK(lab::to_string(v4) == "127.0.0.1:8088");
    const lab::Address v6 = lab::resolve("::1", 9, SOCK_STREAM);
    CHECK(v6.family() == AF_INET6);
    CHECK(lab::to_string(v6) == "[::1]:9");
    CHECK_THROWS_AS(lab::resolve("300.1.2.3.4", 1, SOCK_DGRAM), std::system_error);
}

TEST_CASE("announce_ready prints the port the kernel really bound") {
    lab::Fd udp(lab::check(::socket(AF_INET, SOCK_DGRAM, 0), "socket"));
    const lab::Address any = lab::resolve("127.0.0.1", 0, SOCK_DGRAM);
    lab::check(::bind(udp.get(), any.get(), any.len), "bind");
    const auto [host, port] = lab::host_port(lab::local_address(udp.get()));
    CHECK(port != 0);
    const std::string line = capture(std::cout, [&] { lab::announce_ready(udp.get()); });
    CHECK(line == "READY udp 127.0.0.1 " + std::to_string(port) + "\n");
}

TEST_CASE("Args and run: --help exits 0, bad options exit 2, runtime failures exit 1") {
    constexpr std::array options{lab::Option{"--port", "P", "port"},
                                 lab::Option{"--loud", "", "flag"}};
    const lab::Program program{"demo", "a demo", options};
    auto run = [&](std::vector<std::string> words, auto body) {
        words.insert(words.begin(), "demo");
        std::vector<char*> argv;
        for (auto& w : words)
            argv.push_back(w.data());
        return lab::run(program, static_cast<int>(argv.size()), argv.data(), body);
    };
    auto ok = [](const lab::Args&) {
        return 0;
    };
    int rc = -1;
    const std::string help = capture(std::cout, [&] { rc = run({"--help"}, ok); });
    CHECK(rc == 0);
    CHECK(help.find("--port P") != std::string::npos);

    std::string err = capture(std::cerr, [&] { rc = run({"--bogus"}, ok); });
    CHECK(rc == 2);
    CHECK(err.starts_with("demo: unknown option '--bogus'"));
    err = capture(std::cerr, [&] { rc = run({"--port"}, ok); });
    CHECK(rc == 2);
    err = capture(std::cerr, [&] {
        rc = run({"--port", "99999"}, [](const lab::Args& a) { return int(a.port(1)); });
    });
    CHECK(rc == 2);
    CHECK(err.find("'99999'") != std::string::npos);

    rc = run({"--port", "5", "--loud", "--port", "7"},
             [](const lab::Args& a) { return a.flag("--loud") ? a.port(1) : -1; });
    CHECK(rc == 7);

    err = capture(std::cerr, [&] {
        rc = run({}, [](const lab::Args&) -> int {
            errno = EADDRINUSE;
            lab::check(-1, "bind 127.0.0.1:1");
            return 0;
        });
    });
    CHECK(rc == 1);
    CHECK(err.find("[EADDRINUSE]") != std::string::npos);
}

TEST_CASE("echo_until_eof sends every byte back and returns at the peer's FIN") {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    lab::Fd peer(sv[0]), server(sv[1]);
    std::string payload(5000, '\0');
    for (std::size_t i = 0; i < payload.size(); ++i)
        payload[i] = static_cast<char>(i * 7);
    lab::write_all(peer.get(), payload);
    REQUIRE(::shutdown(peer.get(), SHUT_WR) == 0);
    std::size_t seen = 0;
    lab::echo_until_eof(server.get(), [&](std::string_view data) {
        CHECK(data.size() <= lab::echo_bufsize);
        seen += data.size();
    });
    CHECK(seen == payload.size());
    std::string back(payload.size(), 'x');
    std::size_t got = 0;
    while (got < back.size()) {
        const ssize_t n = ::recv(peer.get(), back.data() + got, back.size() - got, 0);
        REQUIRE(n > 0);
        got += static_cast<std::size_t>(n);
    }
    CHECK(back == payload);
}

TEST_CASE("preview shows 64 bytes C-escaped and marks a cut") {
    CHECK(lab::preview("hi\n") == "\"hi\\n\"");
    CHECK(lab::preview(std::string(65, 'a')) == "\"" + std::string(64, 'a') + "\"...");
}
