"""The periodic jobs that keep the database tidy."""

from __future__ import annotations

import datetime as dt
import logging

from ..infra import jobs_db
from ..infra.jobs import Job
from ..infra.pool import Database
from ..resources.uploads import UploadService
from . import db as maintenance_db

log = logging.getLogger(__name__)

KEEP_DONE_JOBS = dt.timedelta(days=7)
KEEP_DEAD_JOBS = dt.timedelta(days=30)
KEEP_DELIVERIES = dt.timedelta(days=90)  # longer than any reminder look-back


class Maintenance:
    def __init__(self, db: Database, uploads: UploadService | None = None) -> None:
        self.db = db
        self.uploads = uploads

    async def cleanup(self, job: Job) -> None:
        """`cleanup`: expired login sessions, expired invitations, old finished jobs, old
        reminder deliveries and unused uploaded files."""
        now = dt.datetime.now(dt.UTC)
        sessions = await maintenance_db.delete_expired_sessions(self.db.pool)
        invitations = await maintenance_db.expire_invitations(self.db.pool)
        jobs = await jobs_db.delete_finished(
            self.db.pool, now - KEEP_DONE_JOBS, now - KEEP_DEAD_JOBS
        )
        deliveries = await maintenance_db.delete_old_deliveries(self.db.pool, now - KEEP_DELIVERIES)
        uploads = await self.uploads.purge_unused() if self.uploads is not None else 0
        log.info(
            "cleanup done",
            extra={
                "sessions": sessions,
                "invitations": invitations,
                "jobs": jobs,
                "deliveries": deliveries,
                "uploads": uploads,
            },
        )
