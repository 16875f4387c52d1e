"""The AI study assistant: conversations, retrieval, quotas and streaming answers."""
