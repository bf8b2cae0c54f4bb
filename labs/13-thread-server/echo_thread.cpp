// echo_thread.cpp: a TCP echo server with one thread per client. The thread owns the client's fd
// and closes it; the main thread only accepts. Threads are detached, so a finished one frees its
// stack at once.
// Notes: 服务器实现 / 多线程服务器
// Usage: echo_thread [--host H] [--port P] [--quiet] [--stack-kib N] [--joinable-leak]
//                    [--main-closes-conn]
// Try:   ./echo_thread &   then, in two shells,   nc 127.0.0.1 8088   (both are echoed at once)
// Observe: `grep -E 'Threads|VmSize|VmRSS' /proc/$(pgrep -x echo_thread)/status` with clients
//          connected: one thread per client, VmSize up by a whole stack each, VmRSS barely moves.
// Simplifications: no cap on the number of threads (a thread that cannot be created costs that
//          client its connection, nothing more); SIGTERM ends the process, threads and all.
// See also: pthread_create(3), pthread_attr_setstacksize(3), pthread_detach(3), close(2),
//          UNP 26.4 (a thread per client); lab 12 echo_fork.cpp; next lab: echo_nonblock.cpp.
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <system_error>

#include "echo.hpp"
#include "lab.hpp"

namespace {

constexpr std::uint16_t notes_port = 8088;  // the notes' 多线程服务器 binds 8088
constexpr int backlog = 128;                // the notes' listen(5) would leave a burst waiting
constexpr int out_of_fds_pause_ms = 100;    // out of fds: wait for clients to leave, as lab 12 does
constexpr std::array options{
    lab::Option{"--host", "H", "address to listen on (default 127.0.0.1)"},
    lab::Option{"--port", "P", "port to listen on (default 8088; 0: the kernel picks)"},
    lab::Option{"--quiet", "", "do not log each receive (accepts and closes still are)"},
    lab::Option{"--stack-kib", "N",
                "stack size of each client thread in KiB (default: RLIMIT_STACK)"},
    lab::Option{"--joinable-leak", "", "the bug: threads stay joinable and nobody joins them"},
    lab::Option{"--main-closes-conn", "", "the bug: main closes the client's fd (one fd table)"},
};
constexpr lab::Program program{"echo_thread", "A TCP echo server: one thread per client.", options};

// What a client thread gets: its connection (it owns it now), who it is, whether to log data.
struct Client {
    lab::Fd conn;
    std::string who;
    bool quiet;
};

// The thread's body. It owns the Client, so the fd is closed here, when this thread is done with
// it: the fd table is the process's, and a close() anywhere closes it for every thread. Nothing
// may escape a thread's function (std::terminate would end every client): errors end this one.
void* worker(void* arg) {
    // SOLUTION: own the Client; echo to EOF, logging recv/closed lines; catch: dropped
    // [slide:worker]
    const std::unique_ptr<Client> c(static_cast<Client*>(arg));
    try {
        lab::echo_until_eof(c->conn.get(), [&c](std::string_view data) {
            if (!c->quiet) {
                lab::say("recv ", data.size(), " bytes from ", c->who, ": ", lab::preview(data));
            }
        });
        lab::say("closed ", c->who, ": recv returned 0 (its FIN); closing ours");
    } catch (const std::system_error& e) {
        const char* name = ::strerrorname_np(e.code().value());
        lab::say("dropped ", c->who, ": ", e.what(), " [", name, "]");
    }
    // [/slide:worker]
    // END
    return nullptr;
}

// One thread per client, with the stack size asked for; detached unless --joinable-leak.
void start_worker(const pthread_attr_t& attr, std::unique_ptr<Client> c) {
    // SOLUTION: pthread_create(worker) with attr; on success the thread owns c (release it)
    // [slide:create]
    pthread_t thread{};
    lab::check_en(::pthread_create(&thread, &attr, worker, c.get()), "pthread_create");
    c.release();  // the thread deletes it
    // [/slide:create]
    // END
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const bool quiet = args.flag("--quiet");
    const auto stack_kib = args.number<std::size_t>("--stack-kib", 16, 1 << 20, 0);

    // Every thread gets these attributes: a detached thread frees its stack when it ends; a
    // joinable one keeps it until someone calls pthread_join() (its kernel task is gone already).
    pthread_attr_t attr;
    lab::check_en(::pthread_attr_init(&attr), "pthread_attr_init");
    if (!args.flag("--joinable-leak")) {
        lab::check_en(::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED), "detachstate");
    }
    if (stack_kib != 0) {
        lab::check_en(::pthread_attr_setstacksize(&attr, stack_kib * 1024),
                      "pthread_attr_setstacksize");
    }

    // SO_REUSEADDR, as the notes do: a restart must bind while TIME_WAIT remains (lab 10).
    const auto here =
        lab::resolve(args.get("--host", "127.0.0.1"), args.port(notes_port), SOCK_STREAM);
    lab::Fd listener(lab::check(::socket(here.family(), SOCK_STREAM, 0), "socket"));
    const int on = 1;
    lab::check(::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "SO_REUSEADDR");
    lab::check(::bind(listener.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(listener.get(), backlog), "listen");
    lab::announce_ready(listener.get());

    for (;;) {
        lab::Address peer;
        const int accepted = ::accept(listener.get(), peer.get(), &peer.len);
        if (accepted < 0 && (errno == EMFILE || errno == ENFILE)) {
            const char* name = ::strerrorname_np(errno);
            lab::say("accept: ", std::strerror(errno), " [", name, "]: pausing ",
                     out_of_fds_pause_ms, " ms");
            ::poll(nullptr, 0, out_of_fds_pause_ms);  // the connection stays queued: do not spin
            continue;
        }
        lab::Fd conn(lab::check(accepted, "accept"));
        lab::set_nodelay(conn.get());  // each echo leaves at once (lab 19)
        const int fd = conn.get();
        const std::string who = lab::to_string(peer);
        lab::say("accepted ", who);
        // A thread that cannot be created (EAGAIN: RLIMIT_NPROC, or no address space left for its
        // stack) costs this client its connection; the server carries on.
        try {
            // [slide:main-closes]
            start_worker(attr, std::make_unique<Client>(Client{std::move(conn), who, quiet}));
            if (args.flag("--main-closes-conn")) {
                ::close(fd);  // the bug: the worker's fd too, since threads share one fd table
            }
            // [/slide:main-closes]
        } catch (const std::system_error& e) {
            lab::say("no thread for ", who, ": ", e.what(), " [",
                     ::strerrorname_np(e.code().value()), "]: closed it");
        } catch (const std::bad_alloc&) {
            lab::say("no thread for ", who, ": new: Cannot allocate memory [ENOMEM]: closed it");
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
