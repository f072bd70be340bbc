"""A judge model's replies, read by rule, and what its verdicts add up to.

A reply that the rules cannot read is *unparsed*: it has no score (never 0) and is
counted, so that a judge that mostly rambles shows as such instead of as a harsh judge.
Only the reply's first non-empty line is read: a base model that answers and then goes
on writing the rubric's next example ("1\n\n대화:\nA: ...") is read as "1", not also as
speaker A.

- pointwise: the first point of the scale that the reply names, read from its start
  (numbers as whole numbers: "4점" is 4, "14" and "3.5" are no point of 1-5; words not
  inside a longer Latin word, Korean particles allowed after them: 보통이에요).
- pairwise: A, B, or a tie (tie, 동점, 같음, 비슷), whichever the reply names first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.scoring.metrics import KINDS, Metric

TIE_WORDS = ("tie", "동점", "같음", "같다", "비슷", "무승부")
FIELD = "judge"  # the record field and summary column of a pointwise judge's score


def first_line(reply: str) -> str:
    """The reply's first line that holds more than white space ("" if none)."""
    return next((line for line in reply.splitlines() if line.strip()), "")


def read(mode: str, reply: str, scale: Sequence[str]) -> str | None:
    """What the rules read in a reply: a point (pointwise) or a, b, tie (pairwise)."""
    return parse_point(reply, scale) if mode == "pointwise" else parse_choice(reply)


def parse_point(reply: str, scale: Sequence[str]) -> str | None:
    """The scale point the reply's first line names first, or None."""
    reply = first_line(reply)
    found: list[tuple[int, str]] = []
    for point in scale:
        if point.isdigit():
            # a whole number: no digit, and no decimal part, on either side
            pattern = rf"(?<![0-9])(?<![0-9][.,]){re.escape(point)}(?![0-9]|[.,][0-9])"
        else:
            # a word, not part of a longer Latin word ("good" is not in "goodness");
            # Korean particles may follow (보통이에요)
            pattern = rf"(?<![A-Za-z]){re.escape(point)}(?![A-Za-z])"
        match = re.search(pattern, reply, flags=re.IGNORECASE)
        if match:
            found.append((match.start(), point))
    return min(found)[1] if found else None


def parse_choice(reply: str) -> str | None:
    """"a", "b" or "tie", whichever the reply's first line names first, or None."""
    reply = first_line(reply)
    found = []
    for choice, pattern in (("a", r"(?<![A-Za-z])A(?![A-Za-z])"),
                            ("b", r"(?<![A-Za-z])B(?![A-Za-z])")):
        match = re.search(pattern, reply)
        if match:
            found.append((match.start(), choice))
    for word in TIE_WORDS:
        at = reply.lower().find(word)
        if at >= 0:
            found.append((at, "tie"))
    return min(found)[1] if found else None


def metric(model: str, scale: Sequence[str]) -> Metric:
    return Metric(FIELD, f"mean score the judge model ({model}) gave on the scale "
                  f"{' / '.join(scale)}, over the outputs whose reply it could read "
                  "(unread replies are counted apart, never scored 0)", "judge score",
                  kinds=KINDS, field=FIELD, digits=2)


@dataclass(frozen=True)
class Counts:
    asked: int
    parsed: int

    @property
    def unparsed(self) -> int:
        return self.asked - self.parsed
