set terminal svg size 960,840 dynamic noenhanced font 'sans,11' background '#ffffff'

set output 'w1_throughput.svg'
set multiplot layout 2,1 title 'W1 ping-pong throughput (median of the rounds, bars: min-max; lab solid, peers dashed, ceilings dotted)'
set logscale x
set xlabel 'connections'
set ylabel 'MiB/s'
set key outside right top
set grid
set yrange [0:*]
set offsets graph 0.05, graph 0.05, 0, 0
set title 'S = 4096 B'
plot 'data/w1_4096_asio.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'asio', \
     'data/w1_4096_echo_minimal.dat' using 1:2:3:4 with yerrorlines dt 3 lw 1 title 'echo_minimal', \
     'data/w1_4096_epoll_et.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_et', \
     'data/w1_4096_epoll_et_64k.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_et_64k', \
     'data/w1_4096_epoll_lt.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_lt', \
     'data/w1_4096_epoll_lt_64k.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_lt_64k', \
     'data/w1_4096_libevent.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'libevent', \
     'data/w1_4096_libuv.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'libuv', \
     'data/w1_4096_python_selectors.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'python_selectors'
set title 'S = 16384 B'
plot 'data/w1_16384_asio.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'asio', \
     'data/w1_16384_echo_minimal.dat' using 1:2:3:4 with yerrorlines dt 3 lw 1 title 'echo_minimal', \
     'data/w1_16384_epoll_et.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_et', \
     'data/w1_16384_epoll_et_64k.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_et_64k', \
     'data/w1_16384_epoll_lt.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_lt', \
     'data/w1_16384_epoll_lt_64k.dat' using 1:2:3:4 with yerrorlines dt 1 lw 2 title 'epoll_lt_64k', \
     'data/w1_16384_libevent.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'libevent', \
     'data/w1_16384_libuv.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'libuv', \
     'data/w1_16384_python_selectors.dat' using 1:2:3:4 with yerrorlines dt 2 lw 1 title 'python_selectors'
unset multiplot
