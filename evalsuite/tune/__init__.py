"""Finding the fastest build that passes the gate: text samples, per-node sensitivity, the search and its report."""
