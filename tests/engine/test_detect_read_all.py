"""Issue 17: detection says when every page of a mapping's partner records was read
(``Detection.detected_all``) — the moment a hook may write to those records without
shifting the pages of the search still to read (``Chunk.detected_all``: the
registration hook's write-back goes from then on). Not before its last page was
fetched, even with chunks still waiting to be handed over."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.adapters.local import LocalCRM
from connector.engine.detect import Detection, DetectJob
from connector.records import Record
from connector.testing.wait import wait_for

T0 = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)


class GatedCRM(LocalCRM):
    """Pages its search two records at a time; the last page waits for ``gate``."""

    def __init__(self) -> None:
        super().__init__(name="partner")
        self.gate = threading.Event()
        self.pages_read = 0

    def changed_since_chunks(
        self, object_type: str, since: Any, properties: Any, **kw: Any
    ) -> Iterator[list[Record]]:
        records = list(self.changed_since(object_type, since, properties))
        pages = [records[i : i + 2] for i in range(0, len(records), 2)]
        for n, page in enumerate(pages):
            if n == len(pages) - 1:
                assert self.gate.wait(timeout=60)
            self.pages_read += 1
            yield page


def test_every_page_read_is_known_only_once_the_last_page_was_fetched() -> None:
    partner, vendor = GatedCRM(), LocalCRM(name="vendor")
    for i in range(5):
        partner.create("deals", {"name": f"Deal {i}"})
    until = T0 + timedelta(days=365 * 10)
    jobs = [
        DetectJob("deals", side, "deals", None, until, ["name"], None, [])
        for side in ("vendor", "partner")
    ]  # type: ignore[arg-type]
    detection = Detection({"partner": partner, "vendor": vendor}, jobs, chunk_size=2)
    detection.start()
    try:
        assert detection.vendor("deals") == {}
        chunks = detection.partner_chunks("deals")
        first = next(chunks)
        assert len(first) == 2 and not detection.detected_all("deals")
        second = next(chunks)
        assert len(second) == 2 and not detection.detected_all("deals")  # the last page waits
        partner.gate.set()
        # known once the thread has asked for a page after the last (none came)
        wait_for(lambda: detection.detected_all("deals"), timeout=60)
        last = next(chunks)
        assert len(last) == 1
        assert list(chunks) == []
    finally:
        detection.stop()
    assert partner.pages_read == 3
