"""tests/nodes runs in ``.venv-blender`` (the ``bpy`` module). One work-around lives here.

bpy 4.5's module can hang at process exit once it has closed a movie file: Blender's delayed
movie-close thread still waits on a condition variable that a static destructor then destroys
(``pthread_cond_destroy`` blocks for ever; seen with gdb in ``GlobalState::~GlobalState`` while
``delayed_close_thread_run`` waits). The Blender application stops that thread before exiting;
the Python module does not. So, once pytest has reported (results, summary line, exit status),
a run that imported ``bpy`` ends the process without running C++ static destructors. What
Blender's exit would have removed, its session temporary folder (``/tmp/blender_XXXXXX``), is
removed here first.
"""

import os
import shutil
import sys

_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _STATUS["code"] = int(exitstatus)


def pytest_unconfigure(config):
    if "bpy" in sys.modules and "code" in _STATUS:
        tempdir = sys.modules["bpy"].app.tempdir
        if tempdir and os.path.basename(os.path.normpath(tempdir)).startswith("blender_"):
            shutil.rmtree(tempdir, ignore_errors=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_STATUS["code"])
