"""A real full disk for tests: the CLI runs with its output folder on a tiny tmpfs.

The tmpfs is mounted in a private mount namespace (`unshare --user --map-root-user
--mount`), so it needs no root, is visible to nothing else, and disappears with the
process; what the run left on it is copied out for the test to inspect. Writes beyond
its size fail with ENOSPC in the kernel, exactly as on a full disk.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SCRIPT = r'''
disk=$1; size=$2; keep=$3; shift 3
mount -t tmpfs -o size="$size" masquerade-test "$disk" || exit 97
"$@"
rc=$?
cp -a "$disk/." "$keep/"
exit $rc
'''
NO_MOUNT = 97


def masquerade_on_small_disk(disk: Path, size: int, keep: Path, *args: str,
                             ) -> subprocess.CompletedProcess[str]:
    """Run `masquerade ARGS` with a `size`-byte tmpfs on `disk`; its files end in `keep`.

    Skips the test where the kernel or sandbox does not allow the private mount.
    """
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot make a small disk")
    disk.mkdir(exist_ok=True)
    keep.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MASQUERADE_KEY"}
    env["GLOG_minloglevel"] = "2"
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, "sh",
         str(disk), str(size), str(keep), sys.executable, "-m", "masquerade", *args],
        env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode == NO_MOUNT or "unshare:" in proc.stderr:
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    return proc
