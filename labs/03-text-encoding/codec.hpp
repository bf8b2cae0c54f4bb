// codec.hpp: the two pieces text_send.cpp and text_recv.cpp both need, kept in one place (lab 03
// only). hex() shows bytes as they travel; Conversion owns one iconv(3) conversion descriptor.
// See also: iconv_open(3), iconv_close(3), `iconv -l`.
#pragma once
#include <iconv.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <string_view>

#include "lab.hpp"

namespace codec {

// Bytes as "e4 bd a0": what really travels.
inline std::string hex(std::string_view bytes) {
    std::string out;
    for (const unsigned char c : bytes) {
        char two[4];
        std::snprintf(two, sizeof two, "%s%02x", out.empty() ? "" : " ", c);
        out += two;
    }
    return out;
}

// Owns one conversion descriptor, from one encoding to another (one side is always UTF-8 here);
// an encoding iconv does not know is a usage error.
struct Conversion {
    iconv_t cd;
    Conversion(const std::string& to_code, const std::string& from_code)
        : cd(::iconv_open(to_code.c_str(), from_code.c_str())) {
        if (cd != reinterpret_cast<iconv_t>(-1))
            return;
        const std::string& named = to_code == "UTF-8" ? from_code : to_code;
        if (errno == EINVAL)
            throw lab::usage_error("--encoding: iconv knows no encoding '" + named +
                                   "' (`iconv -l` lists them)");
        lab::check(-1, "iconv_open");
    }
    ~Conversion() { ::iconv_close(cd); }
    Conversion(const Conversion&) = delete;
    Conversion& operator=(const Conversion&) = delete;
};

}  // namespace codec
