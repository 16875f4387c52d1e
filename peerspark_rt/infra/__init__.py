"""Shared plumbing every domain may use: the database pool and embedded PostgreSQL, the job
queue, object storage, the OpenAI client, live publishing, validation, cursors, health."""
