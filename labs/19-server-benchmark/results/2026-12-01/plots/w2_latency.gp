set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'

set output 'w2_latency.svg'
set title 'W2: 1-byte request/response, closed loop, 1 connection'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -40
set ylabel 'RTT (µs, log)'
set grid ytics
set key top right
set logscale y
set yrange [10.1:*]
set arrow from graph 0, first 28.8 to graph 1, first 28.8 nohead dt 2 lw 2
set label 'rr_floor p50 28.8 µs' at graph 0.02, first 33.12
plot 'data/w2_latency.dat' using 2:xtic(1) title columnhead, 'data/w2_latency.dat' using 3:xtic(1) title columnhead, 'data/w2_latency.dat' using 4:xtic(1) title columnhead
