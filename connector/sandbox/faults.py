"""Fault injection for the sandbox: random 5xx, 429 storms, latency and dropped connections.

The connector must survive a flaky HubSpot; these faults let tests and benchmarks prove
it.  Everything is driven by a seeded RNG so a failing run can be replayed exactly.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

FaultAction = Literal["ok", "error", "storm", "drop"]

_DEFAULT_STATUSES: tuple[int, ...] = (500, 502, 503, 504)


@dataclass(frozen=True)
class FaultSpec:
    """What can go wrong on one portal, and how often.

    Rates are probabilities per request in [0, 1].  ``storm_429_rate`` is the chance that a
    request *starts* a storm of ``storm_429_length`` consecutive 429 answers (the starting
    request included), mimicking HubSpot's bursts of throttling.
    """

    error_rate: float = 0.0
    status_choices: tuple[int, ...] = field(default=_DEFAULT_STATUSES)
    storm_429_rate: float = 0.0
    storm_429_length: int = 5
    latency_ms: int = 0
    drop_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "storm_429_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if self.storm_429_length < 1:
            raise ValueError(f"storm_429_length must be >= 1, got {self.storm_429_length!r}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms!r}")
        if not self.status_choices:
            raise ValueError("status_choices must not be empty")
        for status in self.status_choices:
            if not 500 <= int(status) <= 599:
                raise ValueError(f"status_choices must be 5xx codes, got {status!r}")
        # Accept lists from JSON bodies but keep the dataclass hashable and immutable.
        object.__setattr__(self, "status_choices", tuple(int(s) for s in self.status_choices))

    @property
    def active(self) -> bool:
        """True when any fault can fire; lets the hot path skip the RNG entirely."""
        return bool(self.error_rate or self.storm_429_rate or self.latency_ms or self.drop_rate)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, used by the admin endpoint and persistence."""
        data = asdict(self)
        data["status_choices"] = list(self.status_choices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultSpec:
        """Build from a JSON body; unknown keys are an error so typos do not go unnoticed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown fault field(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kwargs: dict[str, Any] = dict(data)
        if "status_choices" in kwargs:
            kwargs["status_choices"] = tuple(int(s) for s in kwargs["status_choices"])
        return cls(**kwargs)


_ALIASES: dict[str, str] = {
    "5xx": "error_rate",
    "error": "error_rate",
    "error_rate": "error_rate",
    "429": "storm_429_rate",
    "storm": "storm_429_rate",
    "storm_429_rate": "storm_429_rate",
    "storm_len": "storm_429_length",
    "storm_length": "storm_429_length",
    "storm_429_length": "storm_429_length",
    "latency": "latency_ms",
    "latency_ms": "latency_ms",
    "drop": "drop_rate",
    "drop_rate": "drop_rate",
    "seed": "seed",
    "status": "status_choices",
    "statuses": "status_choices",
    "status_choices": "status_choices",
}


def parse_faults(text: str) -> FaultSpec:
    """Parse the CLI syntax ``5xx=0.2,429=0.1,latency=50,drop=0.05,seed=7``.

    Also understood: ``storm_len=N`` (length of a 429 storm) and ``status=500/503`` (which
    5xx codes to pick from).  An empty string means no faults.
    """
    kwargs: dict[str, Any] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValueError(
                f"bad fault item {item!r}: expected KEY=VALUE "
                "(e.g. 5xx=0.2,429=0.1,latency=50,drop=0.05,seed=7)"
            )
        key, _, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        name = _ALIASES.get(key)
        if name is None:
            raise ValueError(
                f"unknown fault {key!r}; known: 5xx, 429, storm_len, latency, drop, seed, status"
            )
        try:
            if name in ("error_rate", "storm_429_rate", "drop_rate"):
                kwargs[name] = float(value)
            elif name == "status_choices":
                kwargs[name] = tuple(
                    int(v) for v in value.replace("/", " ").replace("|", " ").split()
                )
            else:
                kwargs[name] = int(value)
        except ValueError:
            raise ValueError(f"bad value for fault {key!r}: {value!r} is not a number") from None
    return FaultSpec(**kwargs)


class FaultInjector:
    """Per-portal fault state: the RNG and the remaining length of a running 429 storm."""

    def __init__(self, spec: FaultSpec) -> None:
        self._lock = threading.Lock()
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self._storm_left = 0

    def set_spec(self, spec: FaultSpec) -> None:
        """Swap faults at runtime; reseeding keeps a changed run reproducible too."""
        with self._lock:
            self.spec = spec
            self._rng = random.Random(spec.seed)
            self._storm_left = 0

    def throttle_next(self, requests: int) -> None:
        """Answer the next ``requests`` requests of this portal with 429 (a storm that
        starts now, whatever the spec): a test's one deterministic rate-limit hit."""
        with self._lock:
            self._storm_left = max(self._storm_left, requests)

    def decide(self) -> tuple[FaultAction, int]:
        """Pick what happens to one request: ``(action, status)``.

        Order matters: a running storm wins (HubSpot keeps throttling until the window
        clears), then dropped connections, then 5xx, then the start of a new storm.
        """
        with self._lock:
            spec = self.spec
            if self._storm_left > 0:
                self._storm_left -= 1
                return "storm", 429
            if not (spec.error_rate or spec.storm_429_rate or spec.drop_rate):
                return "ok", 0
            rng = self._rng
            if spec.drop_rate and rng.random() < spec.drop_rate:
                return "drop", 0
            if spec.error_rate and rng.random() < spec.error_rate:
                return "error", rng.choice(spec.status_choices)
            if spec.storm_429_rate and rng.random() < spec.storm_429_rate:
                self._storm_left = spec.storm_429_length - 1
                return "storm", 429
            return "ok", 0
