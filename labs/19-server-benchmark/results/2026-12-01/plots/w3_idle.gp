set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'

set output 'w3_idle.svg'
set title 'W3: 1 active RR connection + N idle ones (0 idle plotted at 1)'
set logscale xy
set xlabel 'idle connections'
set ylabel 'p50 RTT (µs)'
set key top left
set grid
set xrange [0.7:*]
set label 'poll: 2125 ns per idle fd, R² = 0.965' at graph 0.35, graph 0.92
set label 'select: 357 ns per idle fd, R² = 0.994' at graph 0.35, graph 0.86
plot 'data/w3_epoll_et.dat' using 1:2 with linespoints lw 2 title 'epoll_et', \
     'data/w3_epoll_lt.dat' using 1:2 with linespoints lw 2 title 'epoll_lt', \
     'data/w3_fork.dat' using 1:2 with linespoints lw 2 title 'fork', \
     'data/w3_poll.dat' using 1:2 with linespoints lw 2 title 'poll', \
     (-907.9715118928943) + (2.1253387010175313)*x with lines dt 2 lc rgb '#888888' title 'poll fit', \
     'data/w3_rr_floor.dat' using 1:2 with linespoints lw 2 title 'rr_floor', \
     'data/w3_select.dat' using 1:2 with linespoints lw 2 title 'select', \
     (14.433596837944663) + (0.3571762276110102)*x with lines dt 2 lc rgb '#888888' title 'select fit', \
     'data/w3_thread.dat' using 1:2 with linespoints lw 2 title 'thread'
