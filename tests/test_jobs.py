"""The job queue's periodic-task lock (pd_app/jobs): one holder across workers, and a lock left by a worker
that was killed while holding it is taken over once it is old."""

from __future__ import annotations

import time

from huey import SqliteHuey

from pd_app.jobs import LOCK_TTL_S, _acquire, _lock_key


def test_one_worker_holds_a_periodic_tasks_lock_and_a_dead_holders_lock_expires(tmp_path):
    first = SqliteHuey("pd_app", filename=str(tmp_path / "q.sqlite3"))
    second = SqliteHuey("pd_app", filename=str(tmp_path / "q.sqlite3"))  # another worker, same queue
    assert _acquire(first, "snapshots") is True
    assert _acquire(second, "snapshots") is False  # held
    assert _acquire(second, "keep_alive") is True  # another task's lock is another lock
    first.delete(_lock_key("snapshots"))
    assert _acquire(second, "snapshots") is True
    # A holder that died: its lock stays with the time it was taken; past the TTL it is taken over.
    second.put(_lock_key("snapshots"), time.time() - LOCK_TTL_S - 1)
    assert _acquire(first, "snapshots") is True
    assert _acquire(second, "snapshots") is False
