"""The names of one job in Redis, and the job's name itself: nothing here talks to Redis.

Every key of job NAME is under `bulkops:{job:NAME}:` (the braces are a Redis Cluster hash tag: one slot
per job, so a script may touch any of its keys):

    <job>:meta              hash    the job: state (running | cancelled | done), fed (1 once every row is
                                    published), operation, endpoint, credential (a keyed hash, never a
                                    secret), options (JSON), input (its SHA-256), created
    <job>:projects          set     the projects that have a stream
    <job>:s:<project>       stream  the project's rows not yet final (fields l: line, i: instance id);
                                    consumer group `g`; an entry is XACKed and XDELed with its final
    <job>:final             hash    line -> outcome: the first final written for the line wins (HSETNX)
    <job>:finals            stream  the finals the coordinator has not yet written to the report (field r:
                                    the record's JSON); XDELed once written
    <job>:workers           zset    worker (consumer) name -> last heartbeat (Redis time, for status)
    <job>:hb:<worker>       string  a live worker's heartbeat: expires HEARTBEAT_TTL after its last beat

Every key gets a TTL of `JOB_TTL` (days) once the job ends; while it runs, the heartbeats keep their own.
"""

from __future__ import annotations

import re

from bulkops.errors import ConfigError

#: The consumer group of every project stream.
GROUP = "g"
#: Milliseconds a heartbeat key lives: a worker silent this long is dead, and its rows are taken over.
HEARTBEAT_TTL_MS = 5000
#: Seconds a job's keys live after it ended (done or cancelled).
JOB_TTL = 3 * 24 * 3600
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str) -> str:
    """The job's name, if it is 1-64 of [A-Za-z0-9_.-] (starting with a letter or digit): ConfigError."""
    if not _NAME.match(name or ""):
        raise ConfigError(
            f"--job must be 1-64 of A-Z a-z 0-9 _ . - (starting with a letter or digit), got {name!r}"
        )
    return name


class JobKeys:
    """The keys of one job (see the module docstring)."""

    __slots__ = ("final", "finals", "hb_prefix", "meta", "name", "prefix", "projects", "workers")

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self.prefix = prefix = f"bulkops:{{job:{name}}}:"
        self.meta = prefix + "meta"
        self.projects = prefix + "projects"
        self.final = prefix + "final"
        self.finals = prefix + "finals"
        self.workers = prefix + "workers"
        self.hb_prefix = prefix + "hb:"

    def stream(self, project_id: str) -> str:
        """The stream of a project's rows."""
        return f"{self.prefix}s:{project_id}"

    def heartbeat(self, worker: str) -> str:
        """A worker's heartbeat key."""
        return self.hb_prefix + worker

    def project_of(self, stream: str) -> str:
        """The project whose stream `stream` is."""
        return stream[len(self.prefix) + 2 :]
