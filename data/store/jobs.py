"""Background jobs and training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.records import JobRecord, RunRecord
from data.store.base import JOB_KINDS, JOB_STATUSES, StoreError, now, to_json


class JobsMixin:
    def create_job(self, kind: str, params: dict[str, Any]) -> int:
        if kind not in JOB_KINDS:
            raise ValueError(f"Unknown job kind {kind!r}; valid: {list(JOB_KINDS)}.")
        return self._write(
            lambda c: int(
                c.execute(
                    "INSERT INTO jobs (kind, status, params, created_at) VALUES (?,?,?,?)",
                    (kind, "queued", to_json(params), now()),
                ).lastrowid
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
            lambda c: int(
                c.execute(
                    "INSERT INTO runs (job_id, name, status, config, data, created_at)"
                    " VALUES (?,?,?,?,?,?)",
                    (job_id, name, "running", to_json(config), to_json(data), now()),
                ).lastrowid
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
