# Lab 19's W1 at 16 KiB, for the slide: the lab's own data (its results/2026-12-01/plots/data),
# eight of its servers. The lab's plot has every server in two panels: too many lines to read on
# a projector. build.sh sets the terminal and `root` (the repository's top folder).
data(s) = root.'/labs/19-server-benchmark/results/2026-12-01/plots/data/w1_16384_'.s.'.dat'
set title "W1, 16 KiB messages: median, bars min-max" font ",20" noenhanced
set logscale x
set xlabel "connections" font ",20"
set ylabel "MiB/s" font ",20"
set key outside right top noenhanced font ",19"
set tics font ",19"
set grid
set yrange [0:*]
set offsets graph 0.05, graph 0.05, 0, 0
plot for [s in "epoll_lt poll select thread"] data(s) using 1:2:3:4 with yerrorlines lw 3 dt 1 title s, \
     for [s in "asio libuv libevent"] data(s) using 1:2:3:4 with yerrorlines lw 2 dt 2 title s, \
     data("echo_minimal") using 1:2:3:4 with yerrorlines lw 2 dt 3 title "echo_minimal"
