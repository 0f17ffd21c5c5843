#!/bin/bash
# CPU share of lamina's threads and of `yes` during a busy decode (schedstat deltas over 4 s)
cd "$(dirname "$0")/../../.."
yes >/dev/null & y=$!
./build/lamina bench --device cpu --engine_dir engines/smollm2-float32-bench --input_len 32 --output_len 128 --repeats 30 >/dev/null 2>&1 & l=$!
sleep 4
snap() { for t in /proc/$l/task/* /proc/$y/task/*; do echo "$(basename $t) $(cat $t/schedstat 2>/dev/null)"; done; }
a=$(snap); sleep 4; b=$(snap)
kill $y $l; wait 2>/dev/null
python3 - "$a" "$b" $y <<'P'
import sys
a={l.split()[0]:list(map(int,l.split()[1:])) for l in sys.argv[1].splitlines() if len(l.split())==4}
b={l.split()[0]:list(map(int,l.split()[1:])) for l in sys.argv[2].splitlines() if len(l.split())==4}
tot=0
for k in b:
    if k in a:
        r=(b[k][0]-a[k][0])/4e7; w=(b[k][1]-a[k][1])/4e7
        name = "yes" if k==sys.argv[3] else "lamina"
        if name=="lamina": tot+=r
        print(k, name, "on cpu %.0f%%  waiting for a cpu %.0f%%"%(r,w))
print("lamina total %.2f cores"%(tot/100))
P
