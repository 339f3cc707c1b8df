"""The job queue's periodic-task lock (pd_app/jobs): one holder across workers, and a lock left by a worker
that was killed while holding it is taken over once it is old."""

from __future__ import annotations

import time

from huey import SqliteHuey

from pd_app.jobs import LOCK_TTL_S, _acquire, _lock_key, _release


def test_one_worker_holds_a_periodic_tasks_lock_and_a_dead_holders_lock_expires(tmp_path):
    first = SqliteHuey("pd_app", filename=str(tmp_path / "q.sqlite3"))
    second = SqliteHuey("pd_app", filename=str(tmp_path / "q.sqlite3"))  # another worker, same queue
    held = _acquire(first, "snapshots")
    assert held is not None
    assert _acquire(second, "snapshots") is None  # held
    assert _acquire(second, "keep_alive") is not None  # another task's lock is another lock
    _release(first, "snapshots", held)
    again = _acquire(second, "snapshots")
    assert again is not None
    # A holder that died: its lock stays with the time it was taken; past the TTL it is taken over...
    second.put(_lock_key("snapshots"), {"token": again, "at": time.time() - LOCK_TTL_S - 1})
    taken_over = _acquire(first, "snapshots")
    assert taken_over is not None
    assert _acquire(second, "snapshots") is None
    # ...and the old holder, if it was only slow, does not free the new holder's lock when it ends.
    _release(second, "snapshots", again)
    assert _acquire(second, "snapshots") is None
    _release(first, "snapshots", taken_over)
    assert _acquire(second, "snapshots") is not None
