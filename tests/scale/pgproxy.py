"""A TCP proxy between the processes of a test deployment and the machine's PostgreSQL
(which is shared: never restarted by a test). :meth:`PgProxy.cut` drops every
connection and refuses new ones — what a PostgreSQL restart or a network outage does to
the clients — and :meth:`PgProxy.resume` serves again on the same port."""

from __future__ import annotations

import threading

from sqlalchemy.engine import make_url

from connector.testing.scale import TcpProxy


class PgProxy(TcpProxy):
    """:class:`~connector.testing.scale.TcpProxy` with an outage's vocabulary."""

    cuts = 0

    @classmethod
    def to(cls, state_url: str) -> tuple[PgProxy, str]:
        """A started proxy to ``state_url``'s server, and the URL through it."""
        url = make_url(state_url)
        proxy = cls(url.host or "127.0.0.1", url.port or 5432)
        proxy.start()
        through = url.set(host="127.0.0.1", port=proxy.port)
        return proxy, through.render_as_string(hide_password=False)

    def cut(self) -> None:
        """Every connection dropped, new ones refused until :meth:`resume`."""
        self.cuts += 1
        self.stop()

    def resume(self) -> None:
        self.start()

    def outage(self, seconds: float) -> threading.Timer:
        """Cut now, resume after ``seconds`` (on a timer thread)."""
        self.cut()
        timer = threading.Timer(seconds, self.resume)
        timer.daemon = True
        timer.start()
        return timer
