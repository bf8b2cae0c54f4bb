// peer_asio.cpp: a benchmark peer, not a lab program. A TCP echo server on standalone Asio
//                (written against Debian's libasio-dev 1.22.1): one io_context, one thread; each
//                connection reads with async_read_some() into its own 64 KiB buffer, then
//                async_write()s what it read, and reads again only once that write is done, so it
//                holds at most 64 KiB.
// Usage: peer_asio [--port P]   127.0.0.1 only; 0 (the default): the kernel picks; READY line
// Why:   the library Chen Shuo measured muduo against on this very echo (his 2010 blog post
//        "muduo 与 boost asio 吞吐量对比").
// See also: the Asio documentation ("Tutorial", the echo examples); rr_floor.cpp and
//          echo_minimal.cpp (the ceilings).
#include <asio.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <system_error>
#include <utility>

#include "lab.hpp"

namespace {

using asio::ip::tcp;
constexpr std::uint16_t default_port = 0;
constexpr std::size_t buffer_size = 64 << 10;

const std::array options{
    lab::Option{"--port", "P", "port to listen on, on 127.0.0.1 (default {}: the kernel picks)",
                default_port},
};
const lab::Program program{"peer_asio", "A TCP echo server on standalone Asio (benchmark peer).",
                           options};

// One connection; the pending handler holds the last shared_ptr, so it lives while it works.
class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket socket) : socket_(std::move(socket)) {}
    void read() {
        socket_.async_read_some(asio::buffer(buf_),
                                [self = shared_from_this()](std::error_code ec, std::size_t n) {
                                    if (!ec) {
                                        self->write(n);
                                    }
                                });  // EOF or an error: the last reference goes, the socket closes
    }

private:
    void write(std::size_t n) {
        asio::async_write(socket_, asio::buffer(buf_.data(), n),
                          [self = shared_from_this()](std::error_code ec, std::size_t) {
                              if (!ec) {
                                  self->read();
                              }
                          });
    }
    tcp::socket socket_;
    std::array<char, buffer_size> buf_{};
};

void accept(tcp::acceptor& acceptor) {
    acceptor.async_accept([&acceptor](std::error_code ec, tcp::socket socket) {
        if (!ec) {
            socket.set_option(tcp::no_delay(true), ec);  // as every peer: no Nagle delay
            std::make_shared<Session>(std::move(socket))->read();
        }
        accept(acceptor);
    });
}

int serve(const lab::Args& args) {
    lab::exit_on_signals();
    asio::io_context io;
    // The constructor opens, sets SO_REUSEADDR, binds and listens (backlog SOMAXCONN); it throws
    // std::system_error, which lab::run reports as `peer_asio: bind: ... [EADDRINUSE]`.
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), args.port(default_port)});
    lab::announce_ready(acceptor.native_handle());
    accept(acceptor);
    io.run();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, serve);
}
