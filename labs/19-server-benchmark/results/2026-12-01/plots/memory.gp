set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'

set output 'memory.svg'
set title 'Memory per idle connection (W3, largest N against 0)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -40
set ylabel 'KiB per connection (log)'
set grid ytics
set key top right
set logscale y
set yrange [0.0239:*]
plot 'data/memory.dat' using 2:xtic(1) title columnhead, 'data/memory.dat' using 3:xtic(1) title columnhead, 'data/memory.dat' using 4:xtic(1) title columnhead
