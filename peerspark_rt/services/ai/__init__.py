"""The AI study assistant: the upstream client, prompts, token budgets, quotas, retrieval, and the
conversations built on them (assistant.py)."""
