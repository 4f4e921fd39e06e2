"""Scale-out (issue 18, its foundation; docs/scale-out.md): passes run as jobs of a
procrastinate queue kept in the state's PostgreSQL, by ``dealsync worker`` processes on
any number of machines, and each portal's rate budget is shared by every process
through ``pyrate-limiter`` in the state's PostgreSQL (or Redis).

One concept per module: :mod:`.app` (the procrastinate app on the state's database),
:mod:`.tasks` (the jobs and their locks), :mod:`.enqueue` (asking for passes),
:mod:`.stalled` (jobs of a worker that died are retried), :mod:`.worker` (the worker
process), :mod:`.budget` (the shared rate budget).

Nothing here but :mod:`.budget` (which imports its packages only when a store is
used) is imported by the embedded default (SQLite, one process, no queue): the
packages are the optional ``[scale]`` extra.
"""
