"""When a training has collapsed: the rule, over its validations (a leaf: the trainer and any re-analysis of a
run's validation history use the same one)."""
from __future__ import annotations


def collapse_epoch(history: list, after: int, finished: bool = False) -> int:
    """The first epoch of the streak that makes a training collapsed, or -1. ``history``: (epoch, found a lesion)
    per validation, in order.

    Collapsed: ``after`` validations in a row that find no lesion once an earlier validation found one (the network
    lost what it had learnt), or, once the training is ``finished``, no validation that ever found one (it never
    learnt). A slow start, no lesion found at the first validations and found later, is not a collapse."""
    found_any, start, streak = False, -1, 0
    for epoch, found in history:
        if found:
            found_any, streak = True, 0
            continue
        if streak == 0:
            start = epoch
        streak += 1
        if found_any and streak >= after:
            return start
    if finished and not found_any and history:
        return int(history[0][0])
    return -1
