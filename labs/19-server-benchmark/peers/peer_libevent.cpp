// peer_libevent.cpp: a benchmark peer, not a lab program. A TCP echo server on libevent 2.1
//                    bufferevents (written against Debian's libevent-dev 2.1.12): the read
//                    callback moves the whole input evbuffer to the output (evbuffer_add_buffer,
//                    no copy); reading stops while 64 KiB wait to go back, so memory is bounded.
// Usage: peer_libevent [--port P]   127.0.0.1 only; 0 (the default): the kernel picks; READY line
// Why:   libevent 2.1 reads at most 4096 bytes per read() (EVBUFFER_MAX_READ in buffer.c) and
//        asks FIONREAD first: the benchmark shows what that read-size policy costs.
// See also: "Programming with Libevent" (Nick Mathewson), the chapters on bufferevents and
//          evconnlistener; rr_floor.cpp and echo_minimal.cpp (the ceilings).
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "lab.hpp"

namespace {

constexpr std::uint16_t default_port = 0;
constexpr std::size_t high_water = 64 << 10;  // stop reading a client while this much waits

const std::array options{
    lab::Option{"--port", "P", "port to listen on, on 127.0.0.1 (default {}: the kernel picks)",
                default_port},
};
const lab::Program program{"peer_libevent",
                           "A TCP echo server on libevent bufferevents "
                           "(benchmark peer).",
                           options};

void on_read(bufferevent* bev, void*) {
    evbuffer* out = bufferevent_get_output(bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) >= high_water) {
        bufferevent_disable(bev, EV_READ);  // on_drained reads again at half of it
    }
}
// The output fell to the write low-water mark (bufferevent_setwatermark below).
void on_drained(bufferevent* bev, void*) {
    bufferevent_enable(bev, EV_READ);
}
void on_flushed_then_free(bufferevent* bev, void*) {
    bufferevent_free(bev);  // the last echo is out: free closes the socket (BEV_OPT_CLOSE_ON_FREE)
}
void on_event(bufferevent* bev, short what, void*) {
    const bool eof = what & BEV_EVENT_EOF;
    if (eof && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        // Its FIN came with echoes still queued: send them, then close.
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_setcb(bev, nullptr, on_flushed_then_free, on_event, nullptr);
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (eof || (what & BEV_EVENT_ERROR)) {
        bufferevent_free(bev);
    }
}
void on_accept(evconnlistener* listener, evutil_socket_t fd, sockaddr*, int, void*) {
    const int on = 1;  // as every peer: no Nagle delay
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    bufferevent* bev =
        bufferevent_socket_new(evconnlistener_get_base(listener), fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == nullptr) {
        ::close(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, on_drained, on_event, nullptr);
    bufferevent_setwatermark(bev, EV_WRITE, high_water / 2, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    const lab::Address here = lab::resolve("127.0.0.1", args.port(default_port), SOCK_STREAM);
    // The listening socket is ours, so a failure reports its errno ([EADDRINUSE]).
    lab::Fd fd(
        lab::check(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket"));
    const int on = 1;
    lab::check(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on),
               "setsockopt(SO_REUSEADDR)");
    lab::check(::bind(fd.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::check(::listen(fd.get(), SOMAXCONN), "listen");
    const std::unique_ptr<event_base, decltype(&event_base_free)> base(event_base_new(),
                                                                       event_base_free);
    if (!base) {
        throw std::runtime_error("event_base_new failed");
    }
    // Backlog 0: the socket listens already. The listener owns the fd from here on.
    evconnlistener* listener =
        evconnlistener_new(base.get(), on_accept, nullptr, LEV_OPT_CLOSE_ON_FREE, 0, fd.get());
    if (listener == nullptr) {
        throw std::runtime_error("evconnlistener_new failed");
    }
    const int listening = fd.release();
    lab::announce_ready(listening);
    event_base_dispatch(base.get());
    evconnlistener_free(listener);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
