"""Coordination across workers and hosts: debounce timers, ordered dispatch, limits."""
