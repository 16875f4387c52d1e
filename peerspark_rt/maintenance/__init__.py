"""Upkeep jobs: analytics rollups and the cleanup of unused uploads and deleted files."""
