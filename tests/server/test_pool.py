"""The model pool: only configured ids, bounded by count and by estimated memory (LRU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lamina.errors import ConfigError, OverloadedError
from lamina.models.scripted import ScriptedModel
from lamina.server.errors import ModelUnavailableError, NotServedError
from lamina.server.pool import ModelPool, served_specs
from lamina.settings import ServerSettings, Settings


class Weighted(ScriptedModel):
    """A scripted model whose 'weights' are a file of a chosen size."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _pool(tmp_path: Path, sizes: dict[str, int], **server: Any) -> tuple[ModelPool, list[str]]:
    built: list[str] = []

    def factory(spec: str) -> Weighted:
        built.append(spec)
        weights = tmp_path / f"{spec}.gguf"
        weights.write_bytes(b"\0" * sizes[spec])
        return Weighted(weights)

    settings = Settings(
        home=tmp_path,
        model="scripted",
        server=ServerSettings(
            model="base", models={name: name for name in sizes if name != "base"}, **server
        ),
    )
    return ModelPool(settings, factory=factory), built


def test_only_configured_ids_are_built(tmp_path: Path) -> None:
    pool, built = _pool(tmp_path, {"base": 1, "a": 1})
    for hostile in ("local:/etc/shadow", "/tmp/x.gguf", "openai:x@http://127.0.0.1:9/v1", "b"):
        with pytest.raises(NotServedError, match="Use one of: lamina, a"):
            pool.get(hostile)
    assert pool.get("a").id == "a" and pool.get("").id == "lamina"
    assert built == ["a", "base"]
    assert pool.ids() == ["lamina", "a"]


def test_least_recently_used_goes_first_and_the_default_stays(tmp_path: Path) -> None:
    pool, built = _pool(tmp_path, {"base": 1, "a": 1, "b": 1, "c": 1}, max_loaded_models=3)
    default, a = pool.default(), pool.get("a")
    b = pool.get("b")
    pool.get("a")  # a is now more recent than b
    pool.get("c")
    assert sorted(s.id for s in pool.all()) == ["a", "c", "lamina"]
    assert b.model.closed and not a.model.closed and not default.model.closed  # type: ignore[attr-defined]
    pool.get("b")  # built again on demand
    assert built.count("b") == 2


def test_memory_budget_by_weight_file_size(tmp_path: Path) -> None:
    pool, _ = _pool(tmp_path, {"base": 100, "a": 100, "b": 100}, model_memory_bytes=250)
    pool.default()
    pool.get("a")
    pool.get("b")  # 300 > 250: a goes
    assert sorted(s.id for s in pool.all()) == ["b", "lamina"]
    assert sum(s.size for s in pool.all()) == 200


def test_a_busy_model_is_never_evicted_the_request_waits_its_turn(tmp_path: Path) -> None:
    pool, _ = _pool(tmp_path, {"base": 100, "a": 100, "b": 100}, model_memory_bytes=250)
    pool.default()
    busy = pool.get("a")

    async def hold_and_load() -> None:
        async with busy.admission.slot():
            with pytest.raises(OverloadedError) as refused:
                pool.get("b")
            assert refused.value.retry_after
            assert "'a'" in str(refused.value)

    asyncio.run(hold_and_load())
    assert sorted(s.id for s in pool.all()) == ["a", "lamina"]
    pool.get("b")  # a is idle again
    assert sorted(s.id for s in pool.all()) == ["b", "lamina"]


def test_a_configured_model_that_fails_to_load_says_so_without_details(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, model="scripted", server={"models": {"x": "nosuch:y"}})  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailableError) as caught:
        ModelPool(settings).get("x")
    assert "server log" in str(caught.value) and "nosuch" not in str(caught.value)


def test_an_id_may_not_shadow_the_default(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, server={"models": {"lamina": "scripted"}})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"server\.model_id"):
        served_specs(settings)


def test_a_list_of_specs_still_reads(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, server={"models": ["scripted:a", "scripted:b"]})  # type: ignore[arg-type]
    assert settings.server.models == {"scripted:a": "scripted:a", "scripted:b": "scripted:b"}
