// line_reader.hpp: newline framing over a TCP byte stream, one buffer per connection.
// TCP delivers bytes, not messages: one recv() may return half a line, or two lines and a bit of
// a third. A LineReader keeps what it has received but not yet handed out, so every whole line
// comes out exactly once, however the bytes were cut. One reader per connection: a static buffer
// (UNP's readline) would mix the bytes of two connections.
// Used by tcp_chat_server.cpp, tcp_chat_client.cpp and tcp_chat_duplex.cpp (lab 08).
#pragma once
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <string>

#include "lab.hpp"

class LineReader {
public:
    explicit LineReader(int fd) : fd_(fd) {}

    // The next line without its '\n'; false once the peer has sent FIN (recv() returned 0).
    bool read_line(std::string& line) {
        // SOLUTION: next whole line from pending_; recv() only if there is none; false at FIN
        for (;;) {
            if (const auto newline = pending_.find('\n'); newline != std::string::npos) {
                line.assign(pending_, 0, newline);
                pending_.erase(0, newline + 1);
                return true;
            }
            std::array<char, 1024> buf{};
            const ssize_t n = lab::check(::recv(fd_, buf.data(), buf.size(), 0), "recv");
            if (n == 0)
                return false;
            pending_.append(buf.data(), static_cast<std::size_t>(n));
        }
        // END
    }

    // Bytes after the last newline when the peer closed: a line it never finished.
    const std::string& unfinished() const { return pending_; }

private:
    int fd_;
    std::string pending_;
};
