"""Texts real Docker prints that the lab's tests expect, in one place (seen from Engine 20.10 with
CLI 28 and Compose 2.40 in a lab network namespace, and read in the CLI 27 / Compose 2.29 sources)."""

import re

# `docker image inspect X` of an absent image: CLI 27 passes the daemon's words on, CLI 20.10 its own.
NO_SUCH_IMAGE = r"Error( response from daemon)?: No such image: {}"

# A pull from a site: its resolv.conf lists no server, so Go's resolver asks [::1]:53, which refuses.
UNREACHABLE_REGISTRY = re.compile(
    r'Error response from daemon: Get "https://registry-1\.docker\.io/v2/": dial tcp: lookup registry-1\.docker\.io '
    r"on \[::1\]:53: read udp \[::1\]:\d+->\[::1\]:53: read: connection refused")
