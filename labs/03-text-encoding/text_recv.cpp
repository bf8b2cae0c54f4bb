// text_recv.cpp: receive UDP datagrams and decode each with a chosen encoding (iconv): hex,
//                then the text or a clear error.
// Notes: python3编码问题解决 (接收方)
// Usage: text_recv [--host H] [--port P] [--encoding E] [--carry] [--count N]
// Try:   ./text_recv --encoding gb2312 &   then   ./text_send --message 你好
//        (UTF-8 bytes, the wrong decoder)
// Observe: every datagram is shown as hex first; bytes that are not valid in the chosen encoding
//          give `DECODE_ERROR byte K` naming the offset, never silent mojibake or a crash. A
//          character cut across two datagrams (text_send --split 1) fails per datagram, and
//          decodes with --carry.
// Simplifications: text is shown as UTF-8 (a Linux terminal's encoding); one carry buffer is shared
//          by all senders; decoding a datagram stops at its first bad byte.
// See also: iconv(3) (EILSEQ, EINVAL), `iconv -l`; codec.hpp (hex, Conversion);
//           text_send.cpp; next: lab 04.
#include <iconv.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "codec.hpp"
#include "lab.hpp"

namespace {

constexpr std::string_view default_encoding = "utf-8";
constexpr std::uint16_t notes_port = 7789;  // the notes' 接收方 binds 7789
constexpr std::array options{
    lab::Option{"--host", "H", "address to bind (default {})", lab::default_host},
    lab::Option{"--port", "P", "port to bind (default {}; 0: the kernel picks)", notes_port},
    lab::Option{"--encoding", "E",
                "encoding to decode with: utf-8, gb2312, gbk, gb18030, ... (default {})",
                default_encoding},
    lab::Option{"--carry", "",
                "keep an unfinished character's bytes and decode them with the next datagram"},
    lab::Option{"--count", "N", "exit after N datagrams (default: run until SIGINT/SIGTERM)"},
};
constexpr lab::Program program{
    "text_recv", "Receives UDP datagrams and shows their bytes and the text they decode to.",
    options};

// Decoded text in quotes, control characters escaped, so a line stays one line.
std::string quoted(std::string_view text) {
    std::string out = "\"";
    for (const unsigned char c : text) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
            char esc[5];
            std::snprintf(esc, sizeof esc, "\\x%02x", c);
            out += esc;
        } else
            out += static_cast<char>(c);
    }
    return out + "\"";
}

// What decoding gave: the text before any error, the error's errno (0: none) and byte offset.
struct Decoded {
    std::string text;
    int error = 0;
    std::size_t at = 0;
};

// Bytes in the chosen encoding -> UTF-8 text. iconv stops at the first bad byte (EILSEQ) or at an
// unfinished character at the end of the input (EINVAL), and tells us where.
Decoded decode(iconv_t cd, std::string_view bytes) {
    // SOLUTION: decode `bytes` with iconv(3); keep the text before an error, errno, offset
    std::string in(bytes);
    Decoded result;
    result.text.assign(4 * bytes.size() + 8, '\0');  // no encoding grows more than 4x into UTF-8
    // [slide:decode]
    char* from = in.data();
    char* to = result.text.data();
    std::size_t from_left = in.size(), to_left = result.text.size();
    ::iconv(cd, nullptr, nullptr, nullptr, nullptr);  // a fresh start for every input
    if (::iconv(cd, &from, &from_left, &to, &to_left) == static_cast<std::size_t>(-1)) {
        result.error = errno;
        result.at = static_cast<std::size_t>(from - in.data());
    }
    result.text.resize(result.text.size() - to_left);
    return result;
    // [/slide:decode]
    // END
}

// Bind, announce, then show every datagram as hex and as decoded text.
int receive_texts(const lab::Args& args) {
    lab::exit_on_signals();
    const std::string encoding = args.get("--encoding", default_encoding);
    const bool carry = args.flag("--carry");
    const auto count = args.number<long>("--count", 1, 1'000'000'000, 0L);
    const codec::Conversion conversion("UTF-8", encoding);

    // A receiver binds, so that senders know where to send.
    const lab::Address here =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);
    lab::Fd s(lab::check(::socket(here.family(), SOCK_DGRAM, 0), "socket"));
    lab::check(::bind(s.get(), here.get(), here.len), "bind " + lab::to_string(here));
    lab::announce_ready(s.get());

    std::vector<char> buf(65536);  // any UDP datagram fits: nothing is cut before we decode it
    // --carry: the first bytes of a character that the last datagram cut
    std::string carried;
    for (long i = 1; count == 0 || i <= count; ++i) {
        // The bytes first, exactly as they came: the socket knows nothing of text.
        lab::Address from;
        const auto n = static_cast<std::size_t>(lab::check(
            ::recvfrom(s.get(), buf.data(), buf.size(), 0, from.get(), &from.len), "recvfrom"));
        const std::string_view bytes(buf.data(), n);
        lab::say("datagram ", i, " from ", lab::to_string(from), " len ", n, " hex ",
                 codec::hex(bytes));

        // Then the text: decoded alone, or (--carry) after the unfinished bytes of the last
        // datagram.
        if (!carried.empty())
            lab::say("carried ", carried.size(), " bytes first: ", codec::hex(carried),
                     " (byte offsets count from them)");
        const std::string input = carried + std::string(bytes);
        carried.clear();
        const Decoded d = decode(conversion.cd, input);
        if (d.error == 0) {
            lab::say("text ", quoted(d.text));
            continue;
        }
        const std::string_view rest = std::string_view(input).substr(d.at);
        if (d.error == EINVAL && carry) {
            carried = rest;
            if (!d.text.empty())
                lab::say("text ", quoted(d.text));
            lab::say("carry ", rest.size(), " bytes (", codec::hex(rest), "): an unfinished ",
                     encoding, " character, kept for the next datagram");
            continue;
        }

        // Bad bytes are reported with their offset, never shown as guessed text.
        const std::string why =
            d.error == EILSEQ
                ? "bytes " + codec::hex(rest.substr(0, 4)) + " are not valid " + encoding
            : d.error == EINVAL
                ? "the datagram ends inside a " + encoding + " character (" + codec::hex(rest) + ")"
                : "iconv failed";
        const std::string before = d.text.empty() ? "" : "; decoded before it: " + quoted(d.text);
        lab::say("DECODE_ERROR byte ", d.at, ": ", why, " [", lab::errno_name(d.error), "]",
                 before);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, receive_texts);
}
