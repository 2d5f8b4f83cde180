"""Deterministic assignment of customers to a campaign's arms and control group.

A customer's place is ``SHA-256(salt ‖ customer id)`` read as a number ``u`` in [0, 1): control
when ``u`` < the control share, otherwise the arm whose share of the rest holds ``u``. The same
customer always lands in the same group of the same campaign (reruns, resumed executions, other
machines), different campaigns (different salts) split independently, and the split can be
recomputed by anyone who has the salt — an auditor included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CONTROL = "control"
SCALE = 2**64


def position(salt: str, customer_id: int | str) -> int:
    """The customer's place in [0, 2**64) for this salt."""
    digest = hashlib.sha256(f"{salt}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def assign(salt: str, customer_id: int | str, control_share: float, arms: Sequence[tuple[str, int]]) -> str:
    """``control``, or the name of an arm; ``arms`` are (name, integer weight) and share the rest."""
    if not 0 <= control_share < 1:
        raise ValueError(f"control share must be at least 0 and below 1; found {control_share}")
    if not arms or any(w <= 0 for _, w in arms):
        raise ValueError("a campaign needs at least one arm, each with a positive weight")
    u = position(salt, customer_id)
    cut = int(control_share * SCALE)
    if u < cut:
        return CONTROL
    total = sum(w for _, w in arms)
    point = (u - cut) * total // (SCALE - cut)  # exact integers: the rest split by weight
    for name, weight in arms:
        point -= weight
        if point < 0:
            return name
    raise AssertionError("a position fell outside the arms")  # unreachable: point < total
