"""Process limits the worker raises for itself at start."""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now in force.

    Every call in flight holds descriptors (the provider's connection, the one to the
    customer's server), and the common soft default of 1024 would cap a worker far below
    what it can carry. The hard limit is the operator's (ulimit -Hn, systemd's
    LimitNOFILE, the container runtime); an unprivileged process may go up to it, no
    further. Forked workers inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        # e.g. a sandbox that refuses the call: run on the limit we were given.
        return soft
    return hard
