# Lab 14: the idle CPU of echo_nonblock (no client at all) against --sleep-us, measured on loopback
# (utime + stime from /proc/PID/stat over 2 s; data in idle-cpu.dat). build.sh sets the terminal.
set title "echo_nonblock with no client: CPU used while idle" font ",22" noenhanced
set ylabel "CPU (% of one core)" font ",20"
set xlabel "--sleep-us between passes" font ",20" noenhanced
set yrange [0:115]
set style fill solid 0.85 border rgb "#0b3d91"
set boxwidth 0.6
set grid ytics
unset key
set tics font ",20"
plot "idle-cpu.dat" using 0:2:xticlabels(1) with boxes lc rgb "#5b8bd9", \
     "" using 0:($2 + 9):(sprintf("%d %%", $2)) with labels font ",20"
