// echo_fork.cpp: a TCP echo server with one child process per client. The child closes its copy
//                of the listener and echoes its client to EOF; the parent closes its copy of the
//                connection and goes back to accept(); a SIGCHLD handler reaps the children.
// Notes: 多进程服务器
// Usage: echo_fork [--host H] [--port P] [--quiet]
//                  [--no-reap] [--parent-keeps-conn] [--child-keeps-listener]   (the notes' bugs)
// Try:   ./echo_fork &   then two `nc 127.0.0.1 8088` at once: both are echoed at once.
// Observe: `ps -o pid,ppid,stat,cmd --ppid $(pgrep -ox echo_fork)`: one child per client (stat Z:
//          a zombie, with --no-reap); `ls -l /proc/PID/fd` of parent and child show the same
//          socket:[inode]: fork() duplicated the descriptor, not the socket.
// Simplifications: at most 1024 children at once; a client beyond that, or one fork() fails for,
//          is closed at once; no timeouts; parent and children share stdout, a line per write.
// See also: fork(2), waitpid(2), sigaction(2) SA_RESTART, signal-safety(7), close(2) ("the last
//          file descriptor referring to the open file description"); UNP 5.8-5.10; lab 11;
//          next: echo_thread.cpp (lab 13), a thread per client.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include "echo.hpp"
#include "lab.hpp"

namespace {

constexpr std::string_view default_host = "127.0.0.1";
constexpr std::uint16_t notes_port = 8088;  // 多进程服务器 binds 8088
constexpr int notes_backlog = 5;            // and calls listen(5)
constexpr std::size_t max_children = 1024;
constexpr int out_of_fds_pause_ms = 100;

const std::string host_help = "address to listen on (default " + std::string(default_host) + ")";
const std::string port_help =
    "port to listen on (default " + std::to_string(notes_port) + "; 0: the kernel picks)";
const std::array options{
    lab::Option{"--host", "H", host_help},
    lab::Option{"--port", "P", port_help},
    lab::Option{"--quiet", "", "no line per receive (accepts and closes are still logged)"},
    lab::Option{"--no-reap", "", "bug: no SIGCHLD handler, so every finished child stays a zombie"},
    lab::Option{"--parent-keeps-conn", "", "bug: the parent never closes its copy of a connection"},
    lab::Option{"--child-keeps-listener", "", "bug: the child keeps its copy of the listener"},
};
const lab::Program program{"echo_fork", "Echoes TCP clients, each in a child process.", options};

// The pids of running children, so that SIGTERM can be passed on to them. The main loop fills a
// slot with the signals blocked, the SIGCHLD handler empties it; lock-free atomics are safe to
// use in a signal handler (signal-safety(7); [support.signal]).
std::array<std::atomic<pid_t>, max_children> children{};
static_assert(std::atomic<pid_t>::is_always_lock_free);

void reap(int) {
    // SOLUTION: reap every ended child: waitpid(-1, ..., WNOHANG) in a loop (one SIGCHLD can
    // stand for several), emptying its slot in children; keep errno
    // [slide:reap]
    const int saved = errno;  // the interrupted code may be about to read errno
    for (pid_t pid; (pid = ::waitpid(-1, nullptr, WNOHANG)) > 0;) {
        for (auto& slot : children) {
            pid_t expected = pid;
            if (slot.compare_exchange_strong(expected, 0)) {
                break;
            }
        }
    }
    errno = saved;
    // [/slide:reap]
    // END
}

// SIGTERM or SIGINT to the parent: pass SIGTERM on to every child, then exit 0. Each child's own
// handler exits 0 and the kernel closes its socket: its client sees FIN.
void end_all(int) {
    for (auto& slot : children) {
        if (const pid_t pid = slot.load(); pid > 0) {
            ::kill(pid, SIGTERM);
        }
    }
    ::_exit(0);
}

void on_signal(int sig, void (*handler)(int), int flags) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    sigaddset(&action.sa_mask, SIGCHLD);  // the handlers never interrupt each other
    sigaddset(&action.sa_mask, SIGTERM);
    sigaddset(&action.sa_mask, SIGINT);
    action.sa_flags = flags;
    lab::check(::sigaction(sig, &action, nullptr), "sigaction");
}

// The child: one client, to its EOF, then _exit() (never back into the parent's loop).
[[noreturn]] void serve_client(lab::Fd& listener, const lab::Fd& conn, const std::string& who,
                               const lab::Args& args) {
    // SOLUTION: close the child's copy of the listener (unless --child-keeps-listener)
    // [slide:child-close]
    if (!args.flag("--child-keeps-listener")) {
        listener.reset();  // else it would keep the port listening after the parent is gone
    }
    // [/slide:child-close]
    // END
    const bool quiet = args.flag("--quiet");
    int status = 0;
    try {
        lab::echo_until_eof(conn.get(), [&](std::string_view data) {
            if (!quiet) {
                lab::say("recv ", data.size(), " bytes from ", who, ": ", lab::preview(data));
            }
        });
        lab::say("closed ", who, ": recv returned 0 (its FIN); child ", ::getpid(), " exits");
    } catch (const std::system_error& e) {
        if (lab::peer_gone(e)) {
            lab::say("dropped ", who, ": ", e.what(), " [", ::strerrorname_np(e.code().value()),
                     "]");
        } else {
            std::cerr << lab::error_message(program.name, e) << std::endl;
            status = 1;
        }
    }
    ::_exit(status);
}

lab::Fd listen_on(const lab::Address& here) {
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    // SO_REUSEADDR, before bind(): restart while the last run's connections are in TIME_WAIT
    // (lab 10). It cannot get past a socket that still LISTENs, even one a child inherited.
    const int on = 1;
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), notes_backlog), "listen");
    return listener;
}

int serve(const lab::Args& args) {
    on_signal(SIGTERM, end_all, 0);
    on_signal(SIGINT, end_all, 0);
    if (!args.flag("--no-reap")) {
        // SA_RESTART: accept() resumes after the handler instead of failing with EINTR.
        on_signal(SIGCHLD, reap, SA_RESTART | SA_NOCLDSTOP);
    }
    const lab::Address here =
        lab::resolve(args.get("--host", default_host), args.port(notes_port), SOCK_STREAM);
    lab::Fd listener = listen_on(here);
    lab::announce_ready(listener.get());

    sigset_t guarded;  // blocked from fork() until the child's pid is in `children`
    sigemptyset(&guarded);
    sigaddset(&guarded, SIGCHLD);
    sigaddset(&guarded, SIGTERM);
    sigaddset(&guarded, SIGINT);
    std::vector<lab::Fd> kept;  // --parent-keeps-conn: the copies the parent forgets to close
    // SOLUTION: forever: accept() (pause and retry on EMFILE/ENFILE), fork() with `guarded`
    // blocked, record the child in a free slot of `children`; the child runs serve_client(), the
    // parent closes its copy of the connection
    for (;;) {
        lab::Address peer;
        const int fd = ::accept(listener.get(), peer.get(), &peer.len);
        if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
            const char* name = ::strerrorname_np(errno);
            lab::say("accept: ", std::strerror(errno), " [", name, "]: pausing ",
                     out_of_fds_pause_ms, " ms");
            ::poll(nullptr, 0, out_of_fds_pause_ms);  // the connection stays queued: do not spin
            continue;
        }
        lab::Fd conn(lab::check(fd, "accept"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const std::string who = lab::to_string(peer);
        const auto slot = std::find_if(children.begin(), children.end(),
                                       [](const auto& s) { return s.load() == 0; });
        if (slot == children.end()) {
            lab::say("refused ", who, ": ", max_children, " children already");  // closed at once
            continue;
        }
        sigset_t old;
        ::sigprocmask(SIG_BLOCK, &guarded, &old);
        const pid_t pid = ::fork();
        if (pid < 0 &&
            (errno == EAGAIN || errno == ENOMEM)) {  // the process limit: this client only
            const char* name = ::strerrorname_np(errno);
            lab::say("refused ", who, ": fork: ", std::strerror(errno), " [", name, "]");
            ::sigprocmask(SIG_SETMASK, &old, nullptr);
            continue;
        }
        // [slide:fork]
        if (lab::check(pid, "fork") == 0) {
            lab::exit_on_signals();  // the child's own handlers first, not the parent's end_all,
            ::signal(SIGCHLD, SIG_DFL);
            ::sigprocmask(SIG_SETMASK, &old, nullptr);  // then the signals may come
            serve_client(listener, conn, who, args);
        }
        slot->store(pid);
        ::sigprocmask(SIG_SETMASK, &old, nullptr);
        // [/slide:fork]
        lab::say("accepted ", who, ": child ", pid, " serves it");
        if (args.flag("--parent-keeps-conn")) {
            kept.push_back(std::move(conn));  // the client will never see FIN
        }
        // conn's destructor closes the parent's copy: the child's copy is now the only one.
    }
    // END
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
