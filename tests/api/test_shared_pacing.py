"""Several instances share one send budget: two pacers with their own engines (as two processes would have)
reserving at once on one PostgreSQL database hand out slots that never break the quota together."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path

import pytest

from echocenter.db.engine import make_engine, make_sessionmaker
from echocenter.db.migrate import upgrade_to_head
from echocenter.feishu.pacing import HEADROOM, PostgresPacer, per_second
from tests.support.databases import Database
from tests.support.windows import most_in_any_window


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_two_instances_draw_from_one_bucket(database: Database, tmp_path: Path) -> None:
    engines = [make_engine(database.url, schema=database.schema) for _ in range(2)]
    try:
        await upgrade_to_head(engines[0])
        pacers = [PostgresPacer(make_sessionmaker(engine)) for engine in engines]
        chat = per_second("chat:oc_shared", 5)
        assert chat is not None
        slots = await asyncio.gather(*(pacers[i % 2].reserve([chat]) for i in range(40)))
    finally:
        for engine in engines:
            await engine.dispose()
    slots = sorted(slots)
    gaps = [b - a for a, b in pairwise(slots)]
    assert min(gaps) >= 1 / (5 * HEADROOM) - 1e-6  # one spacing for both instances, not one each
    assert most_in_any_window(slots, 1.0) <= 5
