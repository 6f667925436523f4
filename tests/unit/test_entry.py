"""Log entries: the spliced encoding is exactly RFC 8785 of the whole entry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from thawline.oplog.canonical import canonical_json
from thawline.oplog.entry import (
    Actor,
    ActorKind,
    EvidenceRef,
    LogRecord,
    RuleRef,
    Subject,
    decode_entry,
    encode_entry,
    format_ts,
    parse_ts,
)

tokens = st.from_regex(r"[A-Za-z0-9_.:@/+-]{1,20}", fullmatch=True)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
free_form = st.none() | st.dictionaries(st.text(max_size=10), json_values, max_size=4)


@given(
    action=st.from_regex(r"[a-z]{1,8}\.[a-z_]{1,8}", fullmatch=True),
    kind=st.sampled_from(list(ActorKind)),
    actor_id=tokens,
    account=st.none() | tokens,
    reasons=st.lists(tokens, max_size=3),
    rule=st.none() | st.builds(RuleRef, tokens, st.integers(0, 1000)),
    evidence=st.lists(st.builds(EvidenceRef, tokens, tokens), max_size=3),
    before=free_form,
    after=free_form,
    details=free_form,
    correlation=st.none() | tokens,
    seq=st.integers(0, 2**53 - 1),
)
def test_spliced_bytes_equal_the_canonical_form_of_the_whole_entry(
    action: str,
    kind: ActorKind,
    actor_id: str,
    account: str | None,
    reasons: list[str],
    rule: RuleRef | None,
    evidence: list[EvidenceRef],
    before: dict[str, object] | None,
    after: dict[str, object] | None,
    details: dict[str, object] | None,
    correlation: str | None,
    seq: int,
) -> None:
    try:
        record = LogRecord(
            action,
            Actor(kind, actor_id),
            Subject(account_id=account),
            tuple(reasons),
            rule,
            tuple(evidence),
            before,
            after,
            details,
            correlation,
        )
    except ValueError:
        return  # text the PII guard refuses (a valid phone number, say) is not this test's concern
    ts = format_ts(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
    data = encode_entry(record, seq, ts)
    assert data == canonical_json(record.as_json(seq, ts))
    doc = decode_entry(data)
    assert (doc["seq"], doc["ts"], doc["action"]) == (seq, ts, action)


def test_a_record_is_frozen_at_construction_so_later_mutation_changes_nothing() -> None:
    details = {"limit": "5000.00"}
    record = LogRecord("account.frozen", Actor(ActorKind.RULE, "r1"), details=details)
    details["limit"] = "9999.00"
    assert b'"limit":"5000.00"' in encode_entry(record, 0, format_ts(datetime(2026, 1, 1, tzinfo=UTC)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "Frozen"}, "dotted lowercase"),
        ({"subject": Subject(account_id="acc 1")}, "subject.account_id"),
        ({"details": {"amount": 1.5}}, "float"),
        ({"details": {"id_card": "11010519491231002X"}}, r"details\.id_card .* resident ID"),
    ],
)
def test_bad_records_are_refused_with_the_field_named(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"action": "account.frozen", "actor": Actor(ActorKind.SYSTEM, "t")} | kwargs
    with pytest.raises(ValueError, match=message):
        LogRecord(**values)  # type: ignore[arg-type]


def test_timestamps_round_trip_and_must_be_aware() -> None:
    ts = datetime(2026, 11, 25, 8, 15, 26, 123456, tzinfo=UTC)
    assert parse_ts(format_ts(ts)) == ts
    with pytest.raises(ValueError, match="timezone"):
        format_ts(datetime(2026, 1, 1))  # noqa: DTZ001
