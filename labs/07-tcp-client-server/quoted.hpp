// quoted.hpp: bytes shown as a C string literal, so a student sees exactly where one recv() ended.
// TCP keeps no message boundaries: "\n" included or missing, two lines merged, a line cut in two,
// all show up literally. Non-printable bytes appear as \xNN.
// Used by tcp_server.cpp and tcp_client.cpp (lab 07).
#pragma once
#include <cstdio>
#include <string>
#include <string_view>

inline std::string quoted(std::string_view bytes) {
    std::string out = "\"";
    for (const unsigned char c : bytes) {
        if (c == '"' || c == '\\') { out += '\\'; out += static_cast<char>(c); }
        else if (c == '\n') out += "\\n";
        else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else { char hex[5]; std::snprintf(hex, sizeof hex, "\\x%02x", c); out += hex; }
    }
    return out + "\"";
}
