from __future__ import annotations

import types
from pathlib import Path

import pytest

import lamina
from lamina.models import backends, get_model
from lamina.settings import Settings, get_settings


def test_defaults() -> None:
    settings = Settings()
    assert settings.model == "local"
    assert settings.local.n_ctx == 8192
    assert settings.home.name == "lamina-home"  # LAMINA_HOME from the test fixture


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lamina.toml").write_text(
        'model = "scripted"\nmax_retries = 7\n[local]\nn_ctx = 2048\n'
        '[pricing]\n"my-model" = [1.0, 2.0]\n'
    )
    settings = Settings()
    assert (settings.model, settings.max_retries, settings.local.n_ctx) == ("scripted", 7, 2048)
    assert settings.pricing["my-model"] == (1.0, 2.0)
    monkeypatch.setenv("LAMINA_MAX_RETRIES", "2")
    monkeypatch.setenv("LAMINA_LOCAL__N_CTX", "4096")
    settings = Settings()
    assert (settings.max_retries, settings.local.n_ctx) == (2, 4096)


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('model = "scripted:hi"\n')
    monkeypatch.setenv("LAMINA_CONFIG", str(path))
    get_settings.cache_clear()
    assert get_model().chat("x").text == "hi"


def test_invalid_setting_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAMINA_TIMEOUT_S", "-1")
    with pytest.raises(ValueError, match="timeout_s"):
        Settings()


def test_builtin_backends_come_from_entry_points() -> None:
    assert {"local", "openai", "anthropic", "scripted"} <= set(backends())


def test_third_party_backend_registers(settings: Settings) -> None:
    from lamina.models import register
    from lamina.models.scripted import ScriptedModel

    class Shouty(ScriptedModel):
        backend = "shouty"

        @classmethod
        def from_spec(cls, name: str | None, settings: Settings) -> Shouty:
            return cls([lambda messages: messages[-1].content.upper()] * 10, settings=settings)

    register("shouty", Shouty)
    assert get_model("shouty").chat("hey").text == "HEY"


def test_public_api_all_is_complete() -> None:
    public = {
        name
        for name in dir(lamina)
        if not name.startswith("_") and not isinstance(getattr(lamina, name), types.ModuleType)
    }
    assert public - {"annotations"} <= set(lamina.__all__)
    for name in lamina.__all__:
        assert hasattr(lamina, name)


def test_every_setting_is_in_the_readme_settings_table() -> None:
    from pydantic import BaseModel

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    missing = []
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for key in section.model_fields:
                if not any(
                    f"`{name}.{key}`" in row or (f"`{name}." in row and f"`{key}`" in row)
                    for row in rows
                ):
                    missing.append(f"{name}.{key}")
        elif not any(f"`{name}`" in row or f"`{name}," in row for row in rows):
            missing.append(name)
    assert missing == [], f"add these to the README's settings table: {missing}"
