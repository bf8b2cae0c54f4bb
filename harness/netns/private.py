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

from .lan import as_root_command


def private_namespace_unavailable() -> str | None:
    """None if `unshare -rn` works here (a private network namespace of one host, where the
    script is root and can change net.* sysctls), else a one-line reason for pytest.skip that says
    how to run the test instead. The machine is probed once."""
    failure = _probe()
    if failure is None:
        return None
    return (f"needs a private network namespace, and `unshare -rn` fails here ({failure}): "
            "unprivileged user namespaces are off (on Ubuntu 24.04: sudo sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0; elsewhere: sudo sysctl "
            f"kernel.unprivileged_userns_clone=1), or run it as root: {as_root_command()}")


@functools.cache
def _probe() -> str | None:
    """None if `unshare -rn true` succeeds, else what failed."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare(1) is missing: apt-get install util-linux"
    probe = subprocess.run([unshare, "-rn", "true"], capture_output=True, text=True, timeout=30)
    return None if probe.returncode == 0 else (probe.stderr.strip() or f"exit status {probe.returncode}")


def run_in_private_namespace(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run the Python `script` (text) with `args` inside `unshare -rn`, to completion; its result.
    Check private_namespace_unavailable() first. Only loopback exists in there: nothing leaves it."""
    return subprocess.run([shutil.which("unshare") or "unshare", "-rn", sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=timeout, env=os.environ)
