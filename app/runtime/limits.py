"""The open-files limit of the process that serves: raised to its hard limit at start, as Go's runtime does.

Every client connection holds a descriptor, and so do idle keep-alive
connections, `/api/events` subscribers and upstream connections. A service's
default soft limit is often 1,024 (systemd's ``LimitNOFILE``, many shells),
under which the worker stopped accepting connections past about a thousand
while its hard limit (often 524,288) allowed far more. Go (1.19 and later)
raises the soft limit to the hard one when a program starts; so does
``create_app``. Upstream processes inherit the raised limit (Go gives its
children the original one back).
"""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to its hard limit; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft  # already there, or a hard limit Linux refuses as a soft one (over nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # a hard limit above the kernel's nr_open: keep what we have
        return soft
    return hard
