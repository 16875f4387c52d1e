"""Moderation of what users publish: local rules, the OpenAI check, and the review queue."""
