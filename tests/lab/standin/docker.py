"""The lab's `docker` command: answers like Docker CLI 27 with Compose v2.29 (DESIGN.md §5).

There is no Docker engine in the lab. A site's containers are directories under
SITE/docker/containers (config.json, state.json, log, tmp/, run/; see tests/lab/README.md),
each run by one shim.py process; this CLI creates, starts, stops and describes them with the
real CLI's output, error texts and exit codes, so that the rollback tool's parsers meet the
same text here as on a real server. What it does not implement fails loudly
("docker: '...' is not supported by the NetMon lab stand-in", exit 1), never silently.

Run by the site's wrapper: NETMON_LAB_SITE=SITE NETMON_LAB=LAB python3 LAB/standin/docker.py ARGS
The code is in dockercli/ beside this file, one module per concern (tests/lab/README.md).
"""

import sys

from dockercli.cli import main  # beside this file: python3 puts this directory on sys.path

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
