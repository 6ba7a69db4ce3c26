"""The budget exception, importable without the OpenAI SDK (offline runs never import it)."""


class BudgetExhausted(Exception):
    """The run's token or cost budget is spent; the run stops at a phase boundary, resumable."""
