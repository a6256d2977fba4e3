"""Model families beyond GPT-2, and readers for their checkpoint formats."""
