"""Owners of run leases, and a heartbeat thread that keeps leases alive during long runs.

A lease (:meth:`~paizoo.results.store.BaseStore.claim`) says "owner X trains run K until time
T". Owners are ``host:pid:random`` strings (:func:`owner_id`): unique per process, and telling
a runner on the same host whether the owner of a lease is a process that no longer exists
(:func:`owner_is_dead`), whose runs it may take over at once instead of waiting for the expiry.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import threading
from collections.abc import Iterable

from .store import BaseStore, StoreError


def owner_id() -> str:
    """``host:pid:random``: a lease owner id unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def parse_owner(owner: str) -> tuple[str, int] | None:
    """``(host, pid)`` of an :func:`owner_id` string, ``None`` for other owner strings."""
    host, sep, _ = owner.rpartition(":")
    host, sep2, pid = host.rpartition(":")
    if not (sep and sep2 and pid.isdigit()):
        return None
    return host, int(pid)


def owner_is_dead(owner: str) -> bool:
    """``True`` only when ``owner`` is a process of this host that no longer runs (a lease of
    another host, or of a live process, is never called dead)."""
    parsed = parse_owner(owner)
    if parsed is None or parsed[0] != socket.gethostname() or parsed[1] == os.getpid():
        return False
    try:
        os.kill(parsed[1], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def claim_or_take_over(store: BaseStore, run_key: str, owner: str, ttl_s: float) -> bool:
    """:meth:`~BaseStore.claim`, also taking the lease over at once when its holder is a dead
    process of this host (e.g. a runner killed with ``kill -9`` and started again)."""
    if store.claim(run_key, owner, ttl_s):
        return True
    holder = store.leases().get(run_key)
    if holder is not None and owner_is_dead(holder[0]):
        return store.claim(run_key, owner, ttl_s, take_from=holder[0])
    return False


class LeaseKeeper:
    """A daemon thread renewing ``owner``'s leases on ``store`` every ``interval_s`` seconds
    (default ``ttl_s / 4``), on its own connection (:meth:`BaseStore.reopen`).

    Example::

        with LeaseKeeper(store, owner, ttl_s=120) as keeper:
            if store.claim(key, owner, 120):
                keeper.hold(key)
                store.add(train(key))      # the lease ends with the record
                keeper.drop(key)

    A lease that could not be renewed because another owner holds it now (it expired, e.g.
    while the store was unreachable or the process suspended, and another runner claimed it) is
    listed in :attr:`lost` (:meth:`is_lost`), and a line on stderr says so at once; transient
    failures (store locked or unreachable) are retried at the next beat.
    """

    def __init__(self, store: BaseStore, owner: str, ttl_s: float, *,
                 interval_s: float | None = None) -> None:
        self.store, self.owner, self.ttl_s = store, owner, float(ttl_s)
        self.interval_s = float(interval_s) if interval_s is not None else self.ttl_s / 4
        self.lost: set[str] = set()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, run_key: str) -> None:
        with self._lock:
            self._held.add(run_key)
            self.lost.discard(run_key)  # claimed again (e.g. after the other runner's expired)

    def is_lost(self, run_key: str) -> bool:
        """Whether a renewal found ``run_key``'s lease held by another owner (the run should
        stop: another runner trains it now)."""
        with self._lock:
            return run_key in self.lost

    def drop(self, run_key: str) -> None:
        with self._lock:
            self._held.discard(run_key)

    @property
    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def start(self) -> LeaseKeeper:
        self._thread = threading.Thread(target=self._run, name="paizoo-lease-keeper",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: Iterable[str] = ()) -> None:
        """Stop renewing; release ``release``'s leases (e.g. runs interrupted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in release:
            try:
                self.store.release(key, self.owner)
            except StoreError:  # the lease expires by itself
                pass

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(release=self.held)

    def _run(self) -> None:
        conn: BaseStore | None = None
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    conn = conn or self.store.reopen()
                    for key in self.held:
                        if not conn.renew(key, self.owner, self.ttl_s):
                            with self._lock:
                                if key not in self._held:
                                    continue  # dropped meanwhile (recorded or failed)
                                self.lost.add(key)
                                self._held.discard(key)
                            holder = conn.leases().get(key)
                            print(f"paizoo: lost the lease of run {key} on "
                                  f"{self.store.location}"
                                  + (f" to {holder[0]}" if holder else "")
                                  + " (it expired before this runner renewed it); its run is "
                                  "stopped", file=sys.stderr, flush=True)
                except StoreError as exc:  # locked or unreachable: try again at the next beat
                    if conn is not None:
                        conn.reconnect_if_broken()
                    print(f"paizoo: could not renew leases on {self.store.location}: {exc}",
                          file=sys.stderr, flush=True)
        finally:
            if conn is not None:
                conn.close()
