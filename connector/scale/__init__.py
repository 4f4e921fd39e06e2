"""Scale-out (issue 18; docs/scale-out.md): passes, webhook re-reads and outbox
deliveries run as jobs of a procrastinate queue kept in the state's PostgreSQL, by
``dealsync worker`` processes on any number of machines; ``serve`` with
``service.queue: procrastinate`` enqueues instead of running them; each portal's rate
budget is shared by every process through ``pyrate-limiter`` in the state's PostgreSQL
(or Redis).

One concept per module: :mod:`.app` (the procrastinate app on the state's database),
:mod:`.tasks` (the jobs, their locks, priorities and retries), :mod:`.enqueue` (asking
for passes), :mod:`.relay` (a webhook's job requests recorded in the state, handed to
the queue), :mod:`.stalled` (jobs of a worker that died are retried), :mod:`.worker`
(the worker process), :mod:`.queue` (listing jobs), :mod:`.budget` (the shared rate
budget).

Nothing here but :mod:`.budget` (which imports its packages only when a store is
used) is imported by the embedded default (SQLite, one process, no queue): the
packages are the optional ``[scale]`` extra.
"""
