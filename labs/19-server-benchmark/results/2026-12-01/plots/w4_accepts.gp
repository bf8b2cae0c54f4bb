set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'

set output 'w4_accepts.svg'
set title 'W4: accept storm (connect, 1 byte, echo, RST)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xtics rotate by -40
set ylabel 'accepts/s'
set grid ytics
set key top right
set yrange [0:*]
plot 'data/w4_accepts.dat' using 2:xtic(1) title columnhead, 'data/w4_accepts.dat' using 3:xtic(1) title columnhead
