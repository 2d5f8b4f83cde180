"""Business calendar: weekday rhythm and the shopping festivals that shape card spending."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

# Lunar new year's day (春节) by Gregorian year; the festival moves every year.
SPRING_FESTIVAL: dict[int, date] = {
    2020: date(2020, 1, 25),
    2021: date(2021, 2, 12),
    2022: date(2022, 2, 1),
    2023: date(2023, 1, 22),
    2024: date(2024, 2, 10),
    2025: date(2025, 1, 29),
    2026: date(2026, 2, 17),
    2027: date(2027, 2, 6),
    2028: date(2028, 1, 26),
    2029: date(2029, 2, 13),
    2030: date(2030, 2, 3),
}

# Monday … Sunday
WEEKDAY_FACTOR = np.array([0.94, 0.94, 0.95, 0.97, 1.05, 1.12, 1.03])


def day_factor(day: date) -> float:
    """Relative spending intensity of one local day (1.0 = an ordinary day)."""
    factor = float(WEEKDAY_FACTOR[day.weekday()])
    md = (day.month, day.day)
    # 618 and Double 11 (双十一): a ramp of pre-sales, then the peak day.
    if (6, 1) <= md <= (6, 17) or (11, 1) <= md <= (11, 10):
        factor *= 1.25
    if md in ((6, 18), (11, 11)):
        factor *= 2.4
    # National Day golden week (国庆)
    if (10, 1) <= md <= (10, 7):
        factor *= 1.2
    spring = SPRING_FESTIVAL.get(day.year)
    if spring is not None:
        delta = (day - spring).days
        if -14 <= delta < -1:  # new-year shopping
            factor *= 1.5
        elif -1 <= delta <= 6:  # the holiday itself: shops shut, red packets by transfer
            factor *= 0.8
    return factor


def intensity(start: date, days: int) -> np.ndarray:
    """Factor for each of ``days`` consecutive days from ``start``."""
    return np.array([day_factor(start + timedelta(days=i)) for i in range(days)])
