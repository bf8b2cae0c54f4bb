"""Network namespaces for tests, in two kinds (one module each):

  lan      Lan: a small LAN of named namespaces (bridges, veth pairs) for multi-host tests; root
  private  run_in_private_namespace: one script in a private namespace of one host (`unshare -rn`)

The specs import both from here: `from harness.netns import Lan, run_in_private_namespace`.
"""
from .lan import (Host, Lan, NetnsError, as_root_command, cleanup_stale, namespaces_of_this_process,
                  unavailable_reason)
from .private import private_namespace_unavailable, run_in_private_namespace

__all__ = ["Host", "Lan", "NetnsError", "as_root_command", "cleanup_stale", "namespaces_of_this_process",
           "private_namespace_unavailable", "run_in_private_namespace", "unavailable_reason"]
