"""Notifications: in-app (live on `user:<id>`), email (with preferences and digests), and
the effects a write has on others (live events and notifications in one unit)."""
