"""Facts about a server, one module per concern, each a piece of the probe's two remote commands
plus a pure parser of its output: host.py (docker, the app directory and its files, the clock, the
backup directory, the lock, the journal), git.py, compose.py, docker.py, postgres.py (the script
run inside the database container), dumps.py (what a dump archive holds, read back). parts.py is
how the facts ride the two commands, and :class:`~fabfile.facts.parts.Unknown`, the value of a fact
that could not be read. fabfile/site_state.py assembles them into a ``SiteState``.

Nothing here imports the layers above (state, plan, procedures, tasks).
"""
