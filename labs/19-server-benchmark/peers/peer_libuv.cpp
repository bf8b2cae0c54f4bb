// peer_libuv.cpp: a benchmark peer, not a lab program. A TCP echo server on libuv (written
//                 against Debian's libuv1-dev 1.44.2): one loop; uv_read_start() with a fresh
//                 64 KiB buffer per read, uv_write() of what was read, the buffer freed when the
//                 write completes. A client that does not read its echo is not read either once
//                 64 KiB wait for it.
// Usage: peer_libuv [--port P]   127.0.0.1 only; 0 (the default): the kernel picks; READY line
// See also: the libuv guide ("Networking", its echo server); rr_floor.cpp and echo_minimal.cpp
//          (the ceilings).
#include <netinet/in.h>
#include <uv.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <system_error>

#include "lab.hpp"

namespace {

constexpr std::uint16_t default_port = 0;
constexpr std::size_t buffer_size = 64 << 10;
constexpr std::size_t high_water = 64 << 10;  // stop reading a client while this much waits

const std::array options{
    lab::Option{"--port", "P", "port to listen on, on 127.0.0.1 (default {}: the kernel picks)",
                default_port},
};
const lab::Program program{"peer_libuv", "A TCP echo server on libuv (benchmark peer).", options};

// libuv returns negative error numbers (-errno on Unix).
void check_uv(int rc, const std::string& what) {
    if (rc < 0) {
        throw std::system_error(-rc, std::system_category(), what);
    }
}

// One client: the handle first, so libuv's uv_stream_t* and uv_handle_t* point at it too.
struct Client {
    uv_tcp_t tcp;
    bool paused = false;  // not reading: high_water bytes wait for it
};
struct Write {
    uv_write_t req;
    char* data;
};

Client* client_of(void* handle) {
    return reinterpret_cast<Client*>(handle);
}
uv_stream_t* stream(Client* c) {
    return reinterpret_cast<uv_stream_t*>(&c->tcp);
}
void on_close(uv_handle_t* handle) {
    delete client_of(handle);
}
void close_client(Client* c) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) {
        uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), on_close);
    }
}
void on_alloc(uv_handle_t*, std::size_t, uv_buf_t* buf) {
    *buf = uv_buf_init(new char[buffer_size], buffer_size);
}
void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

void on_write(uv_write_t* req, int status) {
    Client* c = client_of(req->handle);
    const auto* w = reinterpret_cast<Write*>(req);
    delete[] w->data;
    delete w;
    if (status < 0) {
        return close_client(c);  // UV_ECANCELED (closing) or the client is gone
    }
    if (c->paused && uv_stream_get_write_queue_size(stream(c)) < high_water) {
        c->paused = false;  // it has caught up: read it again
        uv_read_start(stream(c), on_alloc, on_read);
    }
}
void on_shutdown(uv_shutdown_t* req, int) {
    close_client(client_of(req->handle));
    delete req;
}
void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    Client* c = client_of(s);
    if (nread <= 0) {
        delete[] buf->base;
        if (nread == UV_EOF) {  // its FIN: the queued echoes go first, then our FIN, then close
            uv_read_stop(s);
            auto* req = new uv_shutdown_t{};
            if (uv_shutdown(req, s, on_shutdown) < 0) {
                delete req;
                close_client(c);
            }
        } else if (nread < 0) {
            close_client(c);
        }
        return;  // 0: nothing read this time (EAGAIN)
    }
    auto* w = new Write{{}, buf->base};
    const uv_buf_t out = uv_buf_init(buf->base, static_cast<unsigned>(nread));
    if (uv_write(&w->req, s, &out, 1, on_write) < 0) {
        delete[] w->data;
        delete w;
        return close_client(c);
    }
    if (uv_stream_get_write_queue_size(s) >= high_water) {
        c->paused = true;  // on_write reads it again once the client has caught up
        uv_read_stop(s);
    }
}
void on_connect(uv_stream_t* server, int status) {
    if (status < 0) {
        return;
    }
    auto* c = new Client{};
    uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, stream(c)) < 0) {
        return close_client(c);
    }
    uv_tcp_nodelay(&c->tcp, 1);  // as every peer: no Nagle delay
    uv_read_start(stream(c), on_alloc, on_read);
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    uv_loop_t* loop = uv_default_loop();
    uv_tcp_t server{};
    check_uv(uv_tcp_init(loop, &server), "uv_tcp_init");
    sockaddr_in here{};
    const std::uint16_t port = args.port(default_port);
    check_uv(uv_ip4_addr("127.0.0.1", port, &here), "uv_ip4_addr");
    // libuv sets SO_REUSEADDR itself; a port in use shows at bind or at listen.
    const std::string where = "bind 127.0.0.1:" + std::to_string(port);
    check_uv(uv_tcp_bind(&server, reinterpret_cast<const sockaddr*>(&here), 0), where);
    check_uv(uv_listen(reinterpret_cast<uv_stream_t*>(&server), SOMAXCONN, on_connect), where);
    uv_os_fd_t fd{};
    check_uv(uv_fileno(reinterpret_cast<uv_handle_t*>(&server), &fd), "uv_fileno");
    lab::announce_ready(fd);
    check_uv(uv_run(loop, UV_RUN_DEFAULT), "uv_run");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
