// text_send.cpp: encode text with a chosen encoding (iconv) and send the bytes as UDP datagrams.
// Notes: python3编码问题解决 (发送方)
// Usage: text_send [--host H] [--port P] [--encoding E] [--message TEXT] [--split N]
// Try:   ./text_recv --encoding gb2312 &   then   ./text_send --encoding gb2312 --message 你好
// Observe: the same 你好 leaves as e4 bd a0 e5 a5 bd (UTF-8) or c4 e3 ba c3 (GB2312): the socket
//          carries bytes; the encoding is a choice both ends share. 😀 has no GB2312 form.
// Simplifications: the input (argv, stdin) is taken to be UTF-8, as a Linux terminal sends it;
//          the first line that cannot be encoded ends the program (exit 1).
// See also: iconv(3), iconv_open(3), `iconv -l`; codec.hpp (hex, Conversion);
//           text_recv.cpp (the decoding side).
#include <iconv.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include "codec.hpp"
#include "lab.hpp"

namespace {

constexpr std::string_view default_encoding = "utf-8";
constexpr std::uint16_t notes_port = 7789;  // the notes' 接收方 binds 7789
constexpr std::array options{
    lab::Option{"--host", "H", "destination address (default {})", lab::default_host},
    lab::Option{"--port", "P", "destination port (default {})", notes_port},
    lab::Option{"--encoding", "E",
                "encoding to send in: utf-8, gb2312, gbk, gb18030, ... (default {})",
                default_encoding},
    lab::Option{"--message", "TEXT", "send TEXT and exit (default: one datagram per stdin line)"},
    lab::Option{"--split", "N",
                "send each text as two datagrams: its first N bytes, then the rest"},
};
constexpr lab::Program program{
    "text_send", "Encodes text with iconv and sends the bytes as UDP datagrams.", options};

// The UTF-8 character at `at` and its code point, "'€' (U+20AC)"; empty if the bytes there
// are not UTF-8.
std::string character_at(std::string_view text, std::size_t at) {
    const auto lead = static_cast<unsigned char>(text[at]);
    const std::size_t len = lead < 0x80         ? 1
                            : lead >> 5 == 0x6  ? 2
                            : lead >> 4 == 0xe  ? 3
                            : lead >> 3 == 0x1e ? 4
                                                : 0;
    if (len == 0 || at + len > text.size())
        return {};
    char32_t code = len == 1 ? lead : lead & (0x3f >> (len - 1));
    for (std::size_t i = 1; i < len; ++i) {
        const auto next = static_cast<unsigned char>(text[at + i]);
        if ((next & 0xc0) != 0x80)
            return {};  // every byte after the first must be 10xxxxxx
        code = code << 6 | (next & 0x3f);
    }
    char name[16];
    std::snprintf(name, sizeof name, "U+%04X", static_cast<unsigned>(code));
    return "'" + std::string(text.substr(at, len)) + "' (" + name + ")";
}

// UTF-8 text -> the same text in `encoding`, or an error naming the character and its byte offset.
std::string encode(iconv_t cd, std::string_view text, const std::string& encoding) {
    // SOLUTION: convert `text` with iconv(3); EILSEQ/EINVAL: throw, naming character, offset
    // 4 bytes a character is enough for GB18030, UTF-16, UTF-32
    std::string in(text), out(4 * text.size() + 8, '\0');
    // [slide:iconv]
    char* from = in.data();
    char* to = out.data();
    std::size_t from_left = in.size(), to_left = out.size();
    // a fresh start: no shift state from the last line
    ::iconv(cd, nullptr, nullptr, nullptr, nullptr);
    if (::iconv(cd, &from, &from_left, &to, &to_left) == static_cast<std::size_t>(-1)) {
        // [/slide:iconv]
        const int err = errno;
        const auto at = static_cast<std::size_t>(from - in.data());
        const std::string character = err == EILSEQ ? character_at(text, at) : "";
        const std::string what =
            !character.empty() ? character + " at input byte " + std::to_string(at) + " has no " +
                                     encoding + " form"
            : err == EILSEQ ? "input byte " + std::to_string(at) + " (" +
                                  codec::hex(text.substr(at, 1)) + ") is not UTF-8 text"
            : err == EINVAL
                ? "the input ends inside a UTF-8 character at byte " + std::to_string(at)
                : "iconv failed at input byte " + std::to_string(at);
        throw std::system_error(err, std::system_category(), "encode to " + encoding + ": " + what);
    }
    // stateful encodings close here
    lab::check(::iconv(cd, nullptr, nullptr, &to, &to_left), "iconv (end of text)");
    out.resize(out.size() - to_left);
    return out;
    // END
}

// One sendto() = one datagram; print exactly the bytes that left.
void send_one(const lab::Fd& s, const lab::Address& to, std::string_view bytes,
              const std::string& encoding) {
    lab::check(::sendto(s.get(), bytes.data(), bytes.size(), 0, to.get(), to.len),
               "sendto " + lab::to_string(to));
    lab::say("sent ", bytes.size(), " bytes to ", lab::to_string(to), " encoding ", encoding,
             " hex ", codec::hex(bytes));
}

// Encode each text (the option or each stdin line) and send it.
int send_texts(const lab::Args& args) {
    lab::exit_on_signals();
    const std::string encoding = args.get("--encoding", default_encoding);
    const auto split = args.number<std::size_t>("--split", 1, 65507, 0);
    const lab::Address to =
        lab::resolve(args.get("--host", lab::default_host), args.port(notes_port), SOCK_DGRAM);

    // The conversion is chosen once: from UTF-8 (what the terminal typed) to the wire's one.
    const codec::Conversion conversion(encoding, "UTF-8");
    lab::Fd s(lab::check(::socket(to.family(), SOCK_DGRAM, 0), "socket"));

    // Encode one text and send it: one datagram, or two with --split (which may cut a character
    // in half).
    const auto send_text = [&](std::string_view text) {
        const std::string bytes = encode(conversion.cd, text, encoding);
        if (split == 0 || split >= bytes.size()) {
            send_one(s, to, bytes, encoding);
            return;
        }
        send_one(s, to, std::string_view(bytes).substr(0, split), encoding);
        send_one(s, to, std::string_view(bytes).substr(split), encoding);
    };
    if (auto text = args.value("--message")) {
        send_text(*text);
        return 0;
    }
    for (std::string line; std::getline(std::cin, line);)
        send_text(line);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    return lab::run(program, argc, argv, send_texts);
}
