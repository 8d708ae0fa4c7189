"""Job states, in TorchX's ``AppState`` vocabulary (names only: no torchx import at start-up)."""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from nemorun import secrets


class AppState(str, enum.Enum):
    UNSUBMITTED = "UNSUBMITTED"
    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in (AppState.SUCCEEDED, AppState.FAILED, AppState.CANCELLED)


@dataclass(frozen=True)
class Handle:
    """What a submitter returns: enough to find the job again from another process, later."""

    backend: str
    id: str
    # backend-specific facts (pid, job dir, host, namespace...); JSON-serialisable
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "id": self.id, "data": dict(self.data)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Handle":
        return cls(backend=str(d["backend"]), id=str(d["id"]), data=dict(d.get("data", {})))


@dataclass(frozen=True)
class JobStatus:
    state: AppState
    exit_code: Optional[int] = None
    # native state or reason, for people ("NonZeroExitCode", "process vanished")
    detail: str = ""

    def __post_init__(self) -> None:
        # a service's own words (a Run:ai phase, a Lepton state, a Docker error) reach the status
        # table and record.json: one that echoes a credential must not (nemorun.secrets)
        if self.detail:
            object.__setattr__(self, "detail", secrets.scrub(str(self.detail)))
