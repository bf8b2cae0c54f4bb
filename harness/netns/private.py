"""A private network namespace of one host (`unshare -rn`), for tests that change net.* sysctls
or count the kernel's TCP statistics without anyone else's traffic.

    from harness.netns import private_namespace_unavailable, run_in_private_namespace

    if (reason := private_namespace_unavailable()):
        pytest.skip(reason)
    result = run_in_private_namespace(SCRIPT, str(program("tcp_server")), timeout=60)

The script (Python text) runs as root of a new user namespace, in a new network namespace where
only loopback exists: nothing it sends leaves it. It needs no root on the host where
unprivileged user namespaces are allowed.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys


@functools.cache
def private_namespace_unavailable() -> str | None:
    """None if `unshare -rn` works here (a private network namespace of one host, where the
    script is root and can change net.* sysctls), else a one-line reason for pytest.skip. Probed once."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "needs unshare(1) (Debian package util-linux) for a private network namespace"
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot create a private network namespace here (`unshare -rn`): {probe.stderr.strip()}"
    return None


def run_in_private_namespace(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the Python `script` (text) with `args` inside `unshare -rn`, to completion; its result.
    Check private_namespace_unavailable() first. Only loopback exists in there: nothing leaves it."""
    return subprocess.run([shutil.which("unshare") or "unshare", "-rn", sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ)
