"""``python interruptible.py N ARGS...``: run ``hdr-video ARGS`` in this process, with the
progress bar replaced by one that, once N frames are handed to the writers, prints ``ready`` on
stdout and waits for a signal.

Tests send SIGINT, SIGTERM or SIGKILL after reading ``ready``: the signal lands at a known
point of the run (frames 1 to N - 4 written, the next ones in flight, the rest not decoded),
whatever the machine's speed, instead of racing a run that may finish first.
"""

import os
import sys
import threading

from hdrlift.engine import cli, convert

WAIT = int(sys.argv[1])
PARENT = os.getppid()


def _progress(stream=None):
    def show(done, total, elapsed):
        if done == WAIT:
            print("ready", flush=True)
            never = threading.Event()
            while not never.wait(0.1):  # until a signal ends the run; waking up lets the main thread
                if os.getppid() != PARENT:  # run the handler when the OS gave the signal to another
                    os._exit(1)             # thread; a test run killed before signalling leaves no orphan
    return show


convert.default_progress = _progress
sys.exit(cli.video_main(sys.argv[2:]))
