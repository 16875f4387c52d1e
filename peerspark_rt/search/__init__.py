"""Search across posts, resources and pods (PostgreSQL full-text and trigram)."""
