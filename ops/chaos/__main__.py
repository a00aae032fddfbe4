"""`python -m ops.chaos ...` from the root of a checkout: the chaos run (see README.md)."""

from ops.chaos.chaos import chaos_app

chaos_app()
