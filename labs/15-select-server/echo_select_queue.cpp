// echo_select_queue.cpp: the notes' select server with a write list, done right: each client has
//                        its own output queue, and is in the write set only while it is non-empty.
// Notes: 含有writeList的示例
// Usage: echo_select_queue [--host H] [--port P] [--quiet] [--notes-close-bug]
// Try:   ./echo_select_queue &   then   nc 127.0.0.1 8088   in two shells at once
// Observe: strace -e trace=select,sendto ./echo_select_queue: a client's fd is in the write set
//          only between a receive and the end of its echo; `ss -tn state close-wait` stays empty.
// Simplifications: one recv() of up to 1024 bytes per readiness, queued as one chunk. A client
//          whose queue holds high_water bytes leaves the read set until it drains, so TCP flow
//          control holds a client that never reads. fd >= FD_SETSIZE and EMFILE as echo_select.
//          --notes-close-bug keeps the notes' missing branch for an empty read: a closed client
//          stays in the read set, select() reports it at once, forever (a core burnt, CLOSE_WAIT).
// See also: select(2), select_tut(2), send(2); echo_select.cpp; lab 16 (poll), lab 18 (epoll).
// Length: about 250 lines, over the suite's 150: the queue with its partial writes and
//          high-water mark, the FD_SETSIZE refusal, the EMFILE pause and the notes' bug flag
//          are each part of this lab's lesson.
#include <fcntl.h>
#include <sys/select.h>
#include <sys/socket.h>

#include <algorithm>
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

constexpr std::string_view default_host = "127.0.0.1";  // the notes bind '' (every address)
constexpr std::uint16_t default_port = 8088;            // the notes' first select server's port
constexpr std::size_t notes_bufsize = 1024;             // the notes read recv(1024)
constexpr std::size_t high_water = 64 * 1024;           // queued bytes that stop reading a client
constexpr int backlog =
    SOMAXCONN;  // the notes' listen(10) drops SYNs when many clients come at once
constexpr std::size_t shown_bytes = 64;
const std::string port_help =
    "port to listen on (default " + std::to_string(default_port) + "; 0: the kernel picks)";
const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
    lab::Option{"--notes-close-bug", "",
                "ignore an empty read as the notes do: the closed client is never removed "
                "(100% CPU, CLOSE_WAIT)"},
};
const lab::Program program{
    "echo_select_queue", "Echoes every TCP client through a per-client queue in one select() loop.",
    options};

std::string preview(std::string_view data) {
    return lab::quoted(data.substr(0, shown_bytes)) + (data.size() > shown_bytes ? "..." : "");
}
std::string reason(const std::system_error& e) {
    return std::string(e.what()) + " [" + ::strerrorname_np(e.code().value()) + "]";
}

struct Client {
    lab::Fd fd;
    std::string who;                  // its own address, kept with it (the notes log the last one)
    std::deque<std::string> queue{};  // echoes not yet sent, oldest first
    std::size_t sent = 0;             // bytes of queue.front() already sent (a partial write)
    std::size_t queued = 0;           // bytes in the queue
    bool eof = false;                 // its FIN came: close once the queue is empty
    bool reading() const { return !eof && queued < high_water; }
    bool writing() const { return !queue.empty(); }
};

struct Server {
    lab::Fd listener;
    bool quiet;
    bool notes_close_bug;
    std::map<int, Client> clients{};
    bool paused = false;             // out of fds: the listener is left out of the read set
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
            spare = {};  // the connection stays queued: a listener in the read set would spin
            paused = true;
            return;
        }
        lab::Fd conn(lab::check(fd, "accept4"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const std::string who = lab::to_string(peer);
        // [slide:refuse]
        if (fd >= FD_SETSIZE) {  // FD_SET() on it is undefined: it would write past the fd_set
            lab::say("refused ", who, ": fd ", fd, " >= FD_SETSIZE (", FD_SETSIZE,
                     "): select() cannot watch it; closing");
            return;
        }
        // [/slide:refuse]
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

    // Readable: one recv(), queued. Nothing is sent here: that waits until select() says so.
    void receive(Client& c) {
        std::array<char, notes_bufsize> buf{};
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n == 0 && notes_close_bug) {
            return;  // the notes' missing branch: still in the read set, reported again at once
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

    // Writable: send from the queue until it is empty or the socket is full (a partial write
    // leaves the rest of the front chunk for the next time select() reports the client).
    static void transmit(Client& c) {
        // SOLUTION: send the queue's front until empty or EAGAIN; partial: advance c.sent
        while (!c.queue.empty()) {
            const std::string& front = c.queue.front();
            const ssize_t n =
                ::send(c.fd.get(), front.data() + c.sent, front.size() - c.sent, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                return;
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

    void serve(int fd, bool readable, bool writable) {
        Client& c = clients.at(fd);
        try {
            if (writable) {
                transmit(c);
            }
            if (readable) {
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
    lab::exit_on_signals();
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(default_port), SOCK_STREAM);
    Server s{lab::Fd(lab::check(::socket(here.family(), SOCK_STREAM | SOCK_NONBLOCK, 0), "socket")),
             args.flag("--quiet"), args.flag("--notes-close-bug")};
    const int on = 1;  // restart at once while TIME_WAIT from the last run remains (lab 10)
    lab::check(::setsockopt(s.listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(s.listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(s.listener.get(), backlog), "listen");
    if (!s.reserve()) {
        lab::check(-1, "open /dev/null");
    }
    lab::announce_ready(s.listener.get());

    // SOLUTION: the sets rebuilt from the queues, select(), then each ready client
    for (;;) {
        fd_set rd;  // value-result: select() keeps only the ready fds, so build both anew
        fd_set wr;
        FD_ZERO(&rd);
        FD_ZERO(&wr);
        int top = s.listener.get();
        if (!s.paused) {
            FD_SET(s.listener.get(), &rd);
        }
        // [slide:sets]
        for (const auto& [fd, c] : s.clients) {
            if (c.reading()) {
                FD_SET(fd, &rd);
            }
            if (c.writing()) {
                FD_SET(fd, &wr);  // only while something waits: a socket is almost always writable
            }
            top = std::max(top, fd);
        }
        // No exceptfds: it reports urgent (OOB) data, not errors; a reset shows as readable.
        const int n = ::select(top + 1, &rd, &wr, nullptr, nullptr);
        // [/slide:sets]
        if (n < 0 && errno == EINTR) {
            continue;
        }
        lab::check(n, "select");
        if (!s.paused && FD_ISSET(s.listener.get(), &rd)) {
            s.accept_one();
        }
        std::vector<std::array<int, 3>> ready;  // collected first: serving may erase a client
        for (const auto& [fd, c] : s.clients) {
            if (FD_ISSET(fd, &rd) || FD_ISSET(fd, &wr)) {
                ready.push_back({fd, FD_ISSET(fd, &rd), FD_ISSET(fd, &wr)});
            }
        }
        for (const auto& [fd, readable, writable] : ready) {
            s.serve(fd, readable != 0, writable != 0);
        }
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
