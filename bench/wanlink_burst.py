#!/usr/bin/env python3
"""Runs ../shared/tools/wanlink.py unchanged, plus a loss burst on demand (bench row W4).

  wanlink_burst.py WANLINK BURST_LOSS BURST_SECS up NS_A NS_B --loss BASE ...

After SIGUSR1 the link drops BURST_LOSS of the packets each way (instead of its --loss,
which must be above 0) for BURST_SECS. It works by scaling the random numbers wanlink draws
for its loss decision, so wanlink itself stays as it is.
"""
import random
import runpy
import signal
import sys
import time

path, burst, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
args = sys.argv[4:]
base = float(args[args.index('--loss') + 1])
if not 0 < base <= burst:
    sys.exit('wanlink_burst: --loss must be above 0 and at most BURST_LOSS')
draw = random.random
until = [0.0]


def scaled():
    r = draw()
    return r * base / burst if time.monotonic() < until[0] else r


random.random = scaled
signal.signal(signal.SIGUSR1, lambda *_: until.__setitem__(0, time.monotonic() + secs))
sys.argv = [path] + args
runpy.run_path(path, run_name='__main__')
