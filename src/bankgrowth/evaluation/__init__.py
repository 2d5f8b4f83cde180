"""Evaluation against the simulator's ground truth. Nothing in insight, audiences or models reads
the truth; only these checks do, to say how well the computed results match what happened."""
