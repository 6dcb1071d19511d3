"""How every hdrlift command ends: one line on stderr and an exit code, whatever happened.

:func:`run_cli` wraps a command's body (``hdr-video``, ``hdr-image``, ``hdr-merge``,
``hdrlift-export``, ``hdrlift-train``, ``hdrlift-eval``, ``hdrlift-farm``, ``hdrlift-serve``'s
start-up):

* an :class:`~hdrlift.engine.errors.HdrliftError` prints ``PROG: error: MESSAGE`` and exits with
  the error's code (2 input, 3 output, 4 model, 5 colour, 6 server);
* Ctrl-C, and SIGTERM (a farm scheduler's stop) the same way, print the command's interrupt
  message and exit 130: the work a command finished stays complete (atomic writes);
* out of memory, an OS error the IO layer did not translate, and any other exception (a bug)
  print one line and exit 1; ``HDRLIFT_DEBUG=1`` re-raises the bug with its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

from hdrlift.engine.errors import HdrliftError


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run_cli(prog: str, body: Callable[[], int], *, interrupted: str | None = None, sigterm: bool = True) -> int:
    """Run ``body()`` and turn whatever it raises into one line and an exit code (module doc).
    ``interrupted`` is the line printed on Ctrl-C/SIGTERM (default ``PROG: interrupted``)."""
    previous = None
    if sigterm and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _sigterm)
    try:
        return body()
    except HdrliftError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(interrupted or f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory", file=sys.stderr)
        return 1
    except OSError as exc:  # anything the IO layer did not already translate
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line; HDRLIFT_DEBUG=1 re-raises
        if os.environ.get("HDRLIFT_DEBUG", "").strip() not in ("", "0"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"{prog}: error: internal error ({type(exc).__name__}: {first}); please report it, "
              f"HDRLIFT_DEBUG=1 shows the traceback", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
