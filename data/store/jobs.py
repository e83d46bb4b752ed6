"""Background jobs and training runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from data.records import JobRecord, RunRecord
from data.store.base import JOB_KINDS, JOB_STATUSES, StoreError, now, to_json
from data.store.dialect import dialect_of


class JobsMixin:
    def create_job(self, kind: str, params: dict[str, Any]) -> int:
        if kind not in JOB_KINDS:
            raise ValueError(f"Unknown job kind {kind!r}; valid: {list(JOB_KINDS)}.")
        return self._write(
            lambda c: self.dialect.insert_id(
                c,
                "INSERT INTO jobs (kind, status, params, created_at) VALUES (?,?,?,?)",
                (kind, "queued", to_json(params), now()),
            )
        )

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set job columns: status, pid, progress (dict), result (dict), error, started_at..."""
        allowed = {"status", "pid", "progress", "result", "error", "started_at", "finished_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"Unknown job fields {sorted(unknown)}; valid: {sorted(allowed)}.")
        if "status" in fields and fields["status"] not in JOB_STATUSES:
            raise ValueError(f"Unknown status {fields['status']!r}; valid: {list(JOB_STATUSES)}.")
        if fields.get("status") in ("done", "failed", "cancelled"):
            fields.setdefault("finished_at", now())
        if fields.get("status") == "running":
            fields.setdefault("started_at", now())
        values = [to_json(v) if k in ("progress", "result") else v for k, v in fields.items()]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(lambda c: c.execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*values, job_id]))

    def request_cancel(self, job_id: int) -> None:
        self._write(
            lambda c: c.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        )

    def cancel_requested(self, job_id: int) -> bool:
        rows = self._read("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    # -- workers (jobs/worker.py) -------------------------------------------------------------
    # Plain SQL with ``?`` placeholders and times compared as ISO 8601 text (what ``now()``
    # writes), so that the same statements serve a PostgreSQL store.
    def claim_job(self, worker: str) -> JobRecord | None:
        """Take the oldest queued job nobody asked to cancel, for ``worker`` ("host:pid"), in one
        immediate transaction: it becomes ``running`` with this worker, a first heartbeat, a
        start time and one more attempt. None when nothing is queued.

        The UPDATE repeats ``status = 'queued'``, so two workers can never both take a job,
        also where the SELECT is not serialised with it (PostgreSQL under READ COMMITTED).
        """
        worker = str(worker).strip()
        if not worker:
            raise ValueError("A worker name is needed (host:pid).")

        def claim(c) -> int | None:
            lock = dialect_of(c).skip_locked
            while True:
                row = c.execute(
                    "SELECT id FROM jobs WHERE status = 'queued' AND cancel_requested = 0"
                    " ORDER BY id LIMIT 1" + lock
                ).fetchone()
                if row is None:
                    return None
                stamp = now()
                taken = c.execute(
                    "UPDATE jobs SET status = 'running', worker = ?, heartbeat_at = ?,"
                    " started_at = ?, attempts = attempts + 1, pid = NULL"
                    " WHERE id = ? AND status = 'queued' AND cancel_requested = 0",
                    (worker, stamp, stamp, int(row[0])),
                ).rowcount
                if taken == 1:
                    return int(row[0])

        job_id = self._write(claim)
        return None if job_id is None else self.job(job_id)

    def heartbeat(self, job_id: int, worker: str) -> bool:
        """Say that ``worker`` is still running the job; False when the job is no longer this
        worker's or no longer running (re-queued, failed, cancelled): the worker then stops it."""
        sql = "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND worker = ? AND status = ?"
        values = (now(), int(job_id), str(worker), "running")
        return self._write(lambda c: c.execute(sql, values).rowcount) == 1

    def release_job(self, job_id: int, worker: str, *, note: str) -> bool:
        """Give a claimed job back to the queue (its worker is shutting down): queued again,
        without worker, pid or progress (the progress carries ``note``), and the claim not
        counted as an attempt; its runs still marked running become ``cancelled``. False when
        the job is no longer this worker's running job (it finished meanwhile)."""

        def release(c) -> bool:
            done = c.execute(
                "UPDATE jobs SET status = 'queued', worker = NULL, heartbeat_at = NULL,"
                " pid = NULL, started_at = NULL, progress = ?,"
                " attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END"
                " WHERE id = ? AND worker = ? AND status = 'running'",
                (to_json({"stage": "re-queued", "note": note}), int(job_id), str(worker)),
            ).rowcount
            if done:
                c.execute(
                    "UPDATE runs SET status = 'cancelled', finished_at = ?"
                    " WHERE job_id = ? AND status = 'running'",
                    (now(), int(job_id)),
                )
            return done == 1

        return self._write(release)

    def stale_jobs(self, max_age_seconds: float) -> list[JobRecord]:
        """Running jobs claimed by a worker that has not heartbeated for ``max_age_seconds``."""
        cutoff = (datetime.now(UTC) - timedelta(seconds=float(max_age_seconds))).isoformat(
            timespec="milliseconds"
        )
        rows = self._read(
            "SELECT * FROM jobs WHERE status = 'running' AND worker IS NOT NULL"
            " AND (heartbeat_at IS NULL OR heartbeat_at < ?) ORDER BY id",
            (cutoff,),
        )
        return [JobRecord.from_dict(dict(r)) for r in rows]

    def requeue_or_fail_stale(
        self, max_age_seconds: float = 45.0, max_attempts: int = 2
    ) -> list[int]:
        """Re-queue each job whose worker stopped heartbeating (:meth:`stale_jobs`) while it has
        had fewer than ``max_attempts`` claims, else mark it failed; returns their ids.

        A re-queued job loses its worker, pid and progress (the progress says why it waits
        again); its runs still marked running are marked failed, as are a failed job's. Reads
        first and writes only when something is stale, so the app can call it on every poll.
        """
        stale = self.stale_jobs(max_age_seconds)
        if not stale:
            return []

        def settle(c) -> list[int]:
            changed = []
            stamp = now()
            for job in stale:
                seen = f"worker {job.worker} last seen at {job.heartbeat_at or 'never'}"
                guard = " WHERE id = ? AND status = 'running' AND worker = ? AND attempts = ?"
                if job.heartbeat_at is None:
                    guard += " AND heartbeat_at IS NULL"
                    keys = (job.id, job.worker, job.attempts)
                else:
                    guard += " AND heartbeat_at = ?"
                    keys = (job.id, job.worker, job.attempts, job.heartbeat_at)
                if job.attempts < max_attempts:
                    note = f"re-queued: {seen} stopped heartbeating"
                    done = c.execute(
                        "UPDATE jobs SET status = 'queued', worker = NULL, heartbeat_at = NULL,"
                        " pid = NULL, started_at = NULL, progress = ?" + guard,
                        (to_json({"stage": "re-queued", "note": note}), *keys),
                    ).rowcount
                else:
                    again = job.attempts - 1
                    tries = {0: "not re-queued", 1: "re-queued once already"}.get(
                        again, f"re-queued {again} times already"
                    )
                    error = f"The job's {seen} and stopped heartbeating; {tries}."
                    done = c.execute(
                        "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?" + guard,
                        (stamp, error, *keys),
                    ).rowcount
                if done:
                    c.execute(
                        "UPDATE runs SET status = 'failed', finished_at = ?"
                        " WHERE job_id = ? AND status = 'running'",
                        (stamp, job.id),
                    )
                    changed.append(job.id)
            return changed

        return self._write(settle)

    def job(self, job_id: int) -> JobRecord:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (int(job_id),))
        if not rows:
            raise StoreError(f"No job {job_id} in workspace {self.name}.")
        return JobRecord.from_dict(dict(rows[0]))

    def jobs(self, *, kind: str | None = None, active: bool | None = None) -> list[JobRecord]:
        """Jobs (of one kind; active = queued or running, or not), newest first."""
        sql, params = "SELECT * FROM jobs", []
        where = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if active is not None:
            where.append(
                "status IN ('queued', 'running')"
                if active
                else "status NOT IN ('queued', 'running')"
            )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [JobRecord.from_dict(dict(r)) for r in self._read(sql + " ORDER BY id DESC", params)]

    # -- training runs --------------------------------------------------------------------
    def create_run(
        self, *, name: str, config: dict[str, Any], data: dict[str, Any], job_id: int | None
    ) -> int:
        return self._write(
            lambda c: self.dialect.insert_id(
                c,
                "INSERT INTO runs (job_id, name, status, config, data, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (job_id, name, "running", to_json(config), to_json(data), now()),
            )
        )

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set run columns: status, metrics (see :func:`data.records.run_metrics`), history,
        progress, model_dir, data."""
        allowed = {"status", "metrics", "history", "progress", "model_dir", "data"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"Unknown run fields {sorted(unknown)}; valid: {sorted(allowed)}.")
        if fields.get("status") in ("done", "failed", "cancelled"):
            fields["finished_at"] = now()
        values = [
            to_json(v) if k in ("metrics", "history", "progress", "data") else v
            for k, v in fields.items()
        ]
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write(lambda c: c.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values, run_id]))

    def runs(self, *, job_id: int | None = None) -> list[RunRecord]:
        """Every training run (of one job), oldest first."""
        sql, params = "SELECT * FROM runs", []
        if job_id is not None:
            sql += " WHERE job_id = ?"
            params.append(int(job_id))
        return [RunRecord.from_dict(dict(r)) for r in self._read(sql + " ORDER BY id", params)]

    def run(self, run_id: int) -> RunRecord:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (int(run_id),))
        if not rows:
            raise StoreError(f"No run {run_id} in workspace {self.name}.")
        return RunRecord.from_dict(dict(rows[0]))

    def run_dir(self, run_id: int) -> Path:
        """Folder for a run's files (the saved model lives in ``<run_dir>/model``)."""
        return self.folder / "runs" / f"run-{int(run_id):04d}"
