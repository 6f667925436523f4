"""Raw-SQL tampering that bypasses the append-only triggers, as an attacker with database access would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from thawline.adapters.db import triggers


@contextmanager
def bypassing_triggers(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the append-only triggers do not fire."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            yield conn
            return
        for statement in triggers.drop_statements("sqlite"):
            conn.exec_driver_sql(statement)
        yield conn
        for statement in triggers.create_statements("sqlite"):
            conn.exec_driver_sql(statement)


Edit = Callable[[list[bytes], list[bytes], list[str], int], None]


def edit_bundle(engine: Engine, seq: int, edit: Edit) -> None:
    """Rewrite the bundle holding entry ``seq``; ``edit(entries, chains, accounts, index)`` mutates it."""
    with bypassing_triggers(engine) as conn:
        row = conn.execute(
            text("SELECT * FROM oplog_bundle WHERE first_seq <= :s ORDER BY first_seq DESC LIMIT 1"),
            {"s": seq},
        ).one()
        entries = bytes(row.data).split(b"\n")
        chains_blob = bytes(row.chains)
        chains = [chains_blob[i : i + 32] for i in range(0, len(chains_blob), 32)]
        accounts = row.accounts.split("\n")
        edit(entries, chains, accounts, seq - row.first_seq)
        conn.execute(
            text(
                "UPDATE oplog_bundle SET n_entries = :n, data = :d, chains = :c, accounts = :a "
                "WHERE first_seq = :f"
            ),
            {
                "n": len(entries),
                "d": b"\n".join(entries),
                "c": b"".join(chains),
                "a": "\n".join(accounts),
                "f": row.first_seq,
            },
        )


def entry_bytes(engine: Engine, seq: int) -> bytes:
    """The stored bytes of entry ``seq``."""
    found: list[bytes] = []
    edit_bundle(engine, seq, lambda entries, _c, _a, i: found.append(entries[i]))
    return found[0]


def truncate(engine: Engine, size: int) -> None:
    """Cut the stored entries down to ``size`` (bundles beyond dropped, the straddling one shortened)."""
    with bypassing_triggers(engine) as conn:
        conn.execute(text("DELETE FROM oplog_bundle WHERE first_seq >= :s"), {"s": size})

    def cut(entries: list[bytes], chains: list[bytes], accounts: list[str], i: int) -> None:
        del entries[i + 1 :], chains[i + 1 :], accounts[i + 1 :]

    edit_bundle(engine, size - 1, cut)
