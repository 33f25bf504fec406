"""Exec a command that gets SIGKILL when the test process dies: `parent_guard.py PPID CMD...`.

The tests' children (cameras, receivers, `masquerade run`) must not outlive a crashed
test. Setting PR_SET_PDEATHSIG in Popen's `preexec_fn` would be shorter, but
`preexec_fn` makes Python fork() the multi-threaded test process and run Python code in
the child before exec; the child can then deadlock for good (CPython frees the other
threads' state there, e.g. a PyAV scaler waiting on worker threads that no longer
exist) and the test hangs in Popen. This small process sets the flag on itself and
execs the command, which keeps it (it survives execve).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    parent, command = int(sys.argv[1]), sys.argv[2:]
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the test died before the flag was set
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
