// echo_select.cpp: the notes' select echo server, done right: one thread, one select() over the
//                  listener, stdin and every client; `quit` on stdin ends it.
// Notes: select 版本 (its `running` flag is set by stdin and never read: here quit really quits)
// Usage: echo_select [--host H] [--port P] [--quiet]
// Try:   ./echo_select   then   nc 127.0.0.1 8088   in two shells; type quit where the server runs
// Observe: strace -e trace=select,accept4,recvfrom,sendto ./echo_select: the sets go in with every
//          watched fd and come back with only the ready ones, so they are rebuilt before each call.
// Simplifications: one recv() of up to 1024 bytes per readiness. At most one chunk waits per
//          client: while its echo does not fit, the client sits in the write set instead of the
//          read set, so TCP flow control holds a client that never reads (echo_select_queue.cpp
//          keeps a real queue). An fd >= FD_SETSIZE cannot go in an fd_set: that client is closed
//          with a logged reason. At the fd limit (EMFILE) the listener leaves the read set until a
//          client leaves. exceptfds is not passed: it reports urgent (OOB) data, not errors.
// See also: select(2), select_tut(2), accept4(2); echo_select_queue.cpp; lab 16 (poll).
// Length: about 250 lines, over the suite's 150: stdin, the FD_SETSIZE refusal and the EMFILE
//          pause are each part of this lab's lesson, and each is a few lines in its own place.
#include <fcntl.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "echo.hpp"  // lab::set_nodelay
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";  // the notes bind 'localhost'
constexpr std::uint16_t notes_port = 8088;              // the notes' select server binds 8088
constexpr std::size_t notes_bufsize = 1024;             // and reads recv(1024)
constexpr int backlog =
    SOMAXCONN;  // the notes' listen(20) drops SYNs when many clients come at once
constexpr std::size_t shown_bytes = 64;  // bytes of each receive the log shows
const std::string port_help =
    "port to listen on (default " + std::to_string(notes_port) + "; 0: the kernel picks)";
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
};
const lab::Program program{"echo_select",
                           "Echoes every TCP client in one select() loop; `quit` on stdin ends it.",
                           options};

std::string preview(std::string_view data) {
    return lab::quoted(data.substr(0, shown_bytes)) + (data.size() > shown_bytes ? "..." : "");
}
std::string reason(const std::system_error& e) {
    return std::string(e.what()) + " [" + ::strerrorname_np(e.code().value()) + "]";
}

struct Client {
    lab::Fd fd;
    std::string who;
    std::string pending;  // the part of the last echo that did not fit yet
};

struct Server {
    lab::Fd listener;
    bool quiet;
    bool console = true;  // stdin is open and watched
    std::map<int, Client> clients{};
    std::string typed{};             // stdin bytes not yet ended by a newline
    bool paused = false;             // out of fds: the listener is left out of the read set
    std::array<lab::Fd, 2> spare{};  // fds kept in reserve, given back at the fd limit

    bool reserve() {
        for (lab::Fd& fd : spare) {
            fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        return spare[0] && spare[1];
    }

    void accept_one() {
        lab::Address peer;
        const int fd =
            ::accept4(listener.get(), peer.get(), &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && (errno == EAGAIN || errno == ECONNABORTED)) {
            return;  // the client left before we got to it
        }
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            lab::say("paused accepting: accept4: ", ::strerror(errno), " [",
                     ::strerrorname_np(errno), "]");
            spare = {};  // the connection stays queued; a readable listener would spin
            paused = true;
            return;
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const std::string who = lab::to_string(peer);
        if (fd >= FD_SETSIZE) {  // FD_SET() on it would write past the fd_set (select(2) BUGS)
            lab::say("refused ", who, ": fd ", fd, " >= FD_SETSIZE (", FD_SETSIZE,
                     "): select() cannot watch it; closing");
            return;
        }
        lab::say("accepted ", who);
        clients.emplace(fd, Client{std::move(conn), who, {}});
    }

    void drop(int fd, const std::string& line) {
        clients.erase(fd);
        lab::say(line);
        if (paused && reserve()) {
            lab::say("resumed accepting");
            paused = false;
        }
    }

    // One recv(); the bytes go straight back, and what does not fit waits for the write set.
    void echo(Client& c) {
        std::array<char, notes_bufsize> buf{};
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n == 0) {
            return drop(c.fd.get(),
                        "closed " + c.who + ": recv returned 0 (its FIN); closing ours");
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(lab::check(n, "recv")));
        if (!quiet) {
            lab::say("recv ", n, " bytes from ", c.who, ": ", preview(data));
        }
        c.pending = data;
        flush(c);
    }

    static void flush(Client& c) {
        const ssize_t n = ::send(c.fd.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            lab::check(n, "send");
        }
        c.pending.erase(0, n < 0 ? 0 : static_cast<std::size_t>(n));
    }

    // A line on stdin: `quit` ends the server (false); EOF stops watching stdin.
    bool command() {
        std::array<char, 256> buf{};
        const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
        if (n <= 0) {
            console = false;
            lab::say("stdin closed: serving on (SIGTERM or Ctrl-C ends the server)");
            return true;
        }
        typed.append(buf.data(), static_cast<std::size_t>(n));
        for (std::size_t end; (end = typed.find('\n')) != std::string::npos;) {
            const std::string line = typed.substr(0, end);
            typed.erase(0, end + 1);
            if (line == "quit") {
                lab::say("quit: closing ", clients.size(), " clients and the listener");
                return false;
            }
            lab::say("stdin: ", lab::quoted(line), " is not a command (type quit to stop)");
        }
        return true;
    }
};

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(notes_port), SOCK_STREAM);
    const bool console = ::fcntl(STDIN_FILENO, F_GETFD) != -1;  // started with stdin closed?
    Server s{lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
             args.flag("--quiet"), console};
    const int on = 1;  // restart at once while TIME_WAIT from the last run remains (lab 10)
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), backlog), "listen");
    if (!s.reserve()) {
        lab::check(-1, "open /dev/null");
    }
    lab::announce_ready(s.listener.get());

    // SOLUTION: rebuild the sets, select() with no timeout, act on each ready fd
    for (;;) {
        fd_set readable;  // value-result: select() keeps only the ready fds, so build them anew
        fd_set writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        int top = -1;
        const auto watch = [&top](int fd, fd_set& set) {
            FD_SET(fd, &set);
            top = std::max(top, fd);
        };
        if (!s.paused) {
            watch(s.listener.get(), readable);
        }
        if (s.console) {
            watch(STDIN_FILENO, readable);
        }
        for (const auto& [fd, c] : s.clients) {
            watch(fd, c.pending.empty() ? readable : writable);  // waiting echo: write set only
        }
        const int n = ::select(top + 1, &readable, &writable, nullptr, nullptr);
        if (n < 0 && errno == EINTR) {
            continue;  // resumed after SIGSTOP/SIGCONT (signal(7)): not an error
        }
        lab::check(n, "select");
        if (s.console && FD_ISSET(STDIN_FILENO, &readable) && !s.command()) {
            return 0;  // every Fd closes as s goes out of scope: each client gets our FIN
        }
        if (!s.paused && FD_ISSET(s.listener.get(), &readable)) {
            s.accept_one();
        }
        std::vector<int> ready;  // collected first: serving one may erase it from the map
        for (const auto& [fd, c] : s.clients) {
            if (FD_ISSET(fd, &readable) || FD_ISSET(fd, &writable)) {
                ready.push_back(fd);
            }
        }
        for (const int fd : ready) {
            Client& c = s.clients.at(fd);
            try {
                c.pending.empty() ? s.echo(c) : Server::flush(c);
            } catch (const std::system_error& e) {
                if (!lab::peer_gone(e)) {
                    throw;
                }
                s.drop(fd, "dropped " + c.who + ": " + reason(e));
            }
        }
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
