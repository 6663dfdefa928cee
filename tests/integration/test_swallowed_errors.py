"""No failure passes in silence (issue 13, finding 13, the data half): a journal replay that fails
and a query encoder that cannot be traced each leave a log line and move a counter."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from shelfwise.core.logging import configure_logging
from shelfwise.data.schemas import Event, EventType
from shelfwise.drills.proxy import TcpProxy
from shelfwise.store import open_store
from shelfwise.store.journal import EventJournal


def test_finding_13_journal_replay_errors_are_logged_and_counted(
    fresh_pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging()  # log lines to this test's stderr
    target = sa.make_url(fresh_pg_url)
    with TcpProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        url = target.set(port=proxy.port).render_as_string(hide_password=False)
        with open_store(url) as store:
            journal = EventJournal(tmp_path / "journal")
            journal.append([Event(event_id="j1", type=EventType.VIEW, ts=1_300_000_000_000, item_id="i1")])
            proxy.cut()  # the store goes down before the replay
            journal.start_replaying(store, interval=0.05)
            time.sleep(1.0)  # about twenty failed attempts
            assert journal.backlog == 1
            down = capsys.readouterr().err
            proxy.restore()
            deadline = time.time() + 30
            while journal.backlog and time.time() < deadline:
                time.sleep(0.05)
            journal.stop()
            assert journal.backlog == 0 and store.counts()["events"] == 1
    # logged when the outage starts and when it ends, not at every attempt; every attempt counted
    assert down.count("journal replay failed; retrying") == 1
    assert "journal replay works again" in capsys.readouterr().err
    assert getattr(journal, "replay_failures", 0) >= 5


def test_finding_13_a_torchscript_fallback_is_logged_and_counted(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from shelfwise.search import dense

    class Untraceable(torch.nn.Module):
        """A model whose output TorchScript cannot trace (a Python object, not tensors)."""

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
            return type("Out", (), {"last_hidden_state": object()})()

    def tokenizer(texts: list[str], return_tensors: str) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.ones((1, 4), dtype=torch.long), "attention_mask": torch.ones((1, 4))}

    configure_logging()  # log lines to this test's stderr
    before = getattr(dense, "torchscript_fallbacks", 0)
    assert dense._trace_query_graph(Untraceable(), tokenizer) is None  # eager PyTorch instead
    assert "not traced with TorchScript" in capsys.readouterr().err
    assert getattr(dense, "torchscript_fallbacks", 0) == before + 1
