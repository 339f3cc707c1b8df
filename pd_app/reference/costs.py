"""Pipedrive API tokens per call of each reference read (the ledger's table, budget.py, adds these).

v1 operations: `x-token-cost` in openapi-v1.yaml (getActivityTypes, getUsers, getCurrencies: 20 each).
v2 pipelines and stages: Pipedrive publishes no figure per operation; its changelog ("Deprecation of selected
API v1 endpoints", April 2025) says the v2 replacements of the deprecated v1 endpoints cost 50 % fewer
tokens, and v1 getPipelines and getStages (deprecated in favour of these two) cost 10 in openapi-v1.yaml:
so 5 each.
"""

COSTS: dict[str, int] = {"pipelines": 5, "stages": 5, "activity_types": 20, "users": 20, "currencies": 20}
