// escape.hpp: datagram bytes as a C string literal, for udp_echo_server.cpp and udp_echo_client.cpp (lab 04 only).
// Printable ASCII stays as it is, `"` and `\` get a backslash, every other byte becomes \xHH, so
// binary data and newlines stay on one line and nothing is hidden.
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

inline std::string escaped(std::string_view bytes) {
    std::string out = "\"";
    for (const unsigned char c : bytes) {
        if (c == '"' || c == '\\') { out += '\\'; out += static_cast<char>(c); }
        else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else { char esc[5]; std::snprintf(esc, sizeof esc, "\\x%02x", c); out += esc; }
    }
    return out + "\"";
}
