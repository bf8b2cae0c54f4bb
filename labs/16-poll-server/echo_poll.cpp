// echo_poll.cpp: the same per-client-queue echo server as lab 15's echo_select_queue, on poll():
//                an array of {fd, events, revents} instead of three bitmaps, so no FD_SETSIZE.
// Notes: poll版本 (prose only: this is the program it describes)
// Usage: echo_poll [--host H] [--port P] [--quiet] [--show-nfds-limit]
// Try:   ./echo_poll &   then   nc 127.0.0.1 8088   in two shells;   ./echo_poll --show-nfds-limit
// Observe: strace -e trace=poll ./echo_poll: every call passes the whole array (nfds = clients
//          + 1) and the kernel checks each entry: O(n) per call, however few are ready.
// Simplifications: one recv() of up to 1024 bytes per readiness, queued; POLLOUT only while the
//          queue is non-empty; a client with high_water bytes queued is not read until it drains.
//          At the fd limit (EMFILE) the listener is left out of the array until a client leaves.
//          The array is rebuilt from the client map before each call (poll() leaves `events`
//          alone, so it could be kept; one source of truth is simpler, and the kernel copies and
//          scans all n entries either way). --show-nfds-limit shows nfds > RLIMIT_NOFILE: EINVAL.
// See also: poll(2), getrlimit(2), send(2); lab 15 (select), lab 18 (epoll), lab 19 (cost).
// Length: about 250 lines, over the suite's 150: the same queue server as lab 15's, plus the
//          --show-nfds-limit demonstration.
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "echo.hpp"  // lab::set_nodelay
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";
constexpr std::uint16_t default_port = 8088;   // as lab 15 (the notes' select server)
constexpr std::size_t bufsize = 1024;          // as the notes' recv(1024)
constexpr std::size_t high_water = 64 * 1024;  // queued bytes that stop reading a client
constexpr int backlog = SOMAXCONN;
constexpr std::size_t shown_bytes = 64;
const std::string port_help =
    "port to listen on (default " + std::to_string(default_port) + "; 0: the kernel picks)";
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
    lab::Option{"--show-nfds-limit", "",
                "call poll() with nfds = RLIMIT_NOFILE and one more, print both results, exit"},
};
const lab::Program program{"echo_poll",
                           "Echoes every TCP client through per-client queues in one "
                           "poll() loop.",
                           options};

std::string preview(std::string_view data) {
    return lab::quoted(data.substr(0, shown_bytes)) + (data.size() > shown_bytes ? "..." : "");
}
std::string reason(const std::system_error& e) {
    return std::string(e.what()) + " [" + ::strerrorname_np(e.code().value()) + "]";
}

// poll() refuses an array longer than the fd limit, even of entries it would ignore (fd -1).
int show_nfds_limit() {
    rlimit lim{};
    lab::check(::getrlimit(RLIMIT_NOFILE, &lim), "getrlimit(RLIMIT_NOFILE)");
    std::vector<pollfd> fds(lim.rlim_cur + 1, pollfd{-1, 0, 0});
    // [slide:nfds-limit]
    for (const rlim_t nfds : {lim.rlim_cur, lim.rlim_cur + 1}) {
        const int n = ::poll(fds.data(), nfds, 0);
        const int err = errno;
        lab::say("poll nfds ", nfds, " (RLIMIT_NOFILE ", lim.rlim_cur, "): ",
                 n >= 0 ? std::to_string(n) + " ready"
                        : std::string(::strerror(err)) + " [" + ::strerrorname_np(err) + "]");
    }
    // [/slide:nfds-limit]
    return 0;
}

struct Client {
    lab::Fd fd;
    std::string who;
    std::deque<std::string> queue{};  // echoes not yet sent, oldest first
    std::size_t sent = 0;             // bytes of queue.front() already sent (a partial write)
    std::size_t queued = 0;
    bool eof = false;  // its FIN came: close once the queue is empty
    // [slide:events]
    short events() const {
        return static_cast<short>((!eof && queued < high_water ? POLLIN : 0) |
                                  (queue.empty() ? 0 : POLLOUT));
    }
    // [/slide:events]
};

struct Server {
    lab::Fd listener;
    bool quiet;
    std::map<int, Client> clients{};
    bool paused = false;             // out of fds: the listener is left out of the array
    std::array<lab::Fd, 2> spare{};  // fds kept in reserve, given back at the fd limit

    // Two fds on /dev/null held back: at the fd limit they are given back, so the server still
    // has room for what needs fds meanwhile (a sanitizer's pipe takes two).
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
            return;
        }
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            lab::say("paused accepting: accept4: ", ::strerror(errno), " [",
                     ::strerrorname_np(errno), "]");
            spare = {};  // the connection stays queued: a listener polled for POLLIN would spin
            paused = true;
            return;
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who);
        clients.emplace(fd, Client{std::move(conn), who});
    }

    void drop(int fd, const std::string& line) {
        clients.erase(fd);
        lab::say(line);
        if (paused && reserve()) {
            lab::say("resumed accepting");
            paused = false;
        }
    }

    void receive(Client& c) {
        std::array<char, bufsize> buf{};
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n == 0) {
            c.eof = true;  // no more input; what is queued still goes back first
            return;
        }
        const std::string_view data(buf.data(), static_cast<std::size_t>(lab::check(n, "recv")));
        if (!quiet) {
            lab::say("recv ", n, " bytes from ", c.who, ": ", preview(data));
        }
        c.queue.emplace_back(data);
        c.queued += data.size();
    }

    static void transmit(Client& c) {
        // SOLUTION: send the queue's front until empty or EAGAIN; partial: advance c.sent
        while (!c.queue.empty()) {
            const std::string& front = c.queue.front();
            const ssize_t n =
                ::send(c.fd.get(), front.data() + c.sent, front.size() - c.sent, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;  // full: the rest waits for the next POLLOUT
            }
            c.sent += static_cast<std::size_t>(lab::check(n, "send"));
            c.queued -= static_cast<std::size_t>(n);
            if (c.sent == front.size()) {
                c.queue.pop_front();
                c.sent = 0;
            }
        }
        // END
    }

    // revents: POLLERR and POLLHUP come unasked; recv()/send() then say what happened.
    void serve(int fd, short revents) {
        Client& c = clients.at(fd);
        try {
            if (revents & (POLLOUT | POLLERR | POLLHUP)) {
                transmit(c);
            }
            if (revents & (POLLIN | POLLERR | POLLHUP)) {
                receive(c);
            }
            if (c.eof && c.queue.empty()) {
                drop(fd, "closed " + c.who + ": recv returned 0 (its FIN); closing ours");
            }
        } catch (const std::system_error& e) {
            if (!lab::peer_gone(e)) {
                throw;
            }
            drop(fd, "dropped " + c.who + ": " + reason(e));
        }
    }
};

int serve(const lab::Args& args) {
    if (args.flag("--show-nfds-limit")) {
        return show_nfds_limit();
    }
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(default_port), SOCK_STREAM);
    Server s{lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
             args.flag("--quiet")};
    const int on = 1;  // restart at once while TIME_WAIT from the last run remains (lab 10)
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), backlog), "listen");
    if (!s.reserve()) {
        lab::check(-1, "open /dev/null");
    }
    lab::announce_ready(s.listener.get());

    // SOLUTION: rebuild the pollfd array (POLLOUT only while output waits), poll()
    std::vector<pollfd> fds;
    for (;;) {
        fds.clear();
        fds.push_back({s.listener.get(), static_cast<short>(s.paused ? 0 : POLLIN), 0});
        for (const auto& [fd, c] : s.clients) {
            fds.push_back({fd, c.events(), 0});
        }
        const int n = ::poll(fds.data(), fds.size(), -1);  // the kernel walks all fds.size()
        if (n < 0 && errno == EINTR) {
            continue;  // resumed after SIGSTOP/SIGCONT (signal(7)): not an error
        }
        lab::check(n, "poll");
        for (const pollfd& p : std::span(fds).subspan(1)) {
            if (p.revents != 0) {
                s.serve(p.fd, p.revents);  // fds holds copies: erasing a client is safe
            }
        }
        if (fds[0].revents & POLLIN) {
            s.accept_one();  // after the clients: a new fd must not meet a stale revents
        }
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
