"""What operators and producers call: agents, conversations, jobs, keys, reconcile, metrics."""
