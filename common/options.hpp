// options.hpp: the command-line plumbing of lab.hpp (which includes it): numbers and ports checked
// from text, each program's options, the parsed Args, and the usage text. No lesson here; every
// program's options follow README.md "The contract for your own programs".
//   usage_error, parse_number, parse_port, Shown, Option, default_host, Program, Args, print_usage
#pragma once
#include <charconv>
#include <concepts>
#include <cstdint>
#include <optional>
#include <ostream>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lab {

// A bad command line. run() prints it with the usage text and exits 2.
struct usage_error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A whole number in [lo, hi], or a usage_error that names the option and the bad text.
template <std::integral T>
T parse_number(std::string_view text, std::string_view name, T lo, T hi) {
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || end != text.data() + text.size() || value < lo || value > hi)
        throw usage_error(std::string(name) + " wants a whole number from " + std::to_string(lo) +
                          " to " + std::to_string(hi) + ", not '" + std::string(text) + "'");
    return value;
}
inline std::uint16_t parse_port(std::string_view text, std::string_view name = "--port") {
    return parse_number<std::uint16_t>(text, name, 0, 65535);
}

// An option's default as its help text shows it, in place of "{}": the default is written once,
// as the constant the program uses.
struct Shown {
    constexpr Shown() = default;
    constexpr Shown(std::string_view t) : text(t) {}
    template <std::integral T>
    constexpr Shown(T n) : number(static_cast<long long>(n)), is_number(true) {}
    std::string str() const { return is_number ? std::to_string(number) : std::string(text); }
    std::string_view text;
    long long number = 0;
    bool is_number = false;
};
// One option: "--port" with arg "P", or a flag when arg is empty.
struct Option {
    std::string_view name, arg, help;
    Shown fallback = {};
};
// The address every program binds or connects to unless told otherwise: never a wildcard.
inline constexpr std::string_view default_host = "127.0.0.1";
struct Program {
    std::string_view name, summary;
    std::span<const Option> options;
};

// The command line, checked against the program's options; the last occurrence of one wins.
class Args {
public:
    Args(const Program& program, int argc, char** argv) {
        for (int i = 1; i < argc; ++i) {
            const std::string_view word = argv[i];
            if (word == "--help") {
                help_ = true;
                continue;
            }
            const Option* opt = nullptr;
            for (const Option& o : program.options)
                if (o.name == word)
                    opt = &o;
            if (!opt)
                throw usage_error(
                    (word.starts_with("-") ? "unknown option '" : "unexpected argument '") +
                    std::string(word) + "'");
            if (!opt->arg.empty() && i + 1 == argc)
                throw usage_error(std::string(word) + " needs a value");
            given_.emplace_back(opt->name, opt->arg.empty() ? std::string_view{}
                                                            : std::string_view(argv[++i]));
        }
    }
    bool help() const { return help_; }
    bool flag(std::string_view name) const { return value(name).has_value(); }
    std::optional<std::string_view> value(std::string_view name) const {
        std::optional<std::string_view> last;
        for (const auto& [n, v] : given_)
            if (n == name)
                last = v;
        return last;
    }
    std::string get(std::string_view name, std::string_view fallback) const {
        return std::string(value(name).value_or(fallback));
    }
    std::uint16_t port(std::uint16_t fallback) const {
        auto v = value("--port");
        return v ? parse_port(*v) : fallback;
    }
    // Option NAME as a whole number in [lo, hi]; fallback when it is not given.
    template <std::integral T>
    T number(std::string_view name, T lo, T hi, T fallback) const {
        const auto v = value(name);
        return v ? parse_number<T>(*v, name, lo, hi) : fallback;
    }

private:
    std::vector<std::pair<std::string_view, std::string_view>> given_;
    bool help_ = false;
};

inline void print_usage(std::ostream& out, const Program& p) {
    out << "usage: " << p.name << " [options]\n" << p.summary << "\noptions:\n";
    for (const Option& o : p.options) {
        const std::string head =
            std::string(o.name) + (o.arg.empty() ? "" : " " + std::string(o.arg));
        std::string help(o.help);
        if (const auto at = help.find("{}"); at != std::string::npos)
            help.replace(at, 2, o.fallback.str());
        const std::size_t pad = head.size() < 22 ? 22 - head.size() : 1;
        out << "  " << head << std::string(pad, ' ') << help << '\n';
    }
    out << "  --help                print this text and exit\n" << std::flush;
}

}  // namespace lab
