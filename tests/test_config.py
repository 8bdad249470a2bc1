"""Config: validation with every error and its YAML path, precedence, the CLI, and docs/config.md in sync."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from inferline.cli import app
from inferline.config import BackendKind, ConfigError, load_config
from inferline.config_docs import render

ROOT = Path(__file__).resolve().parents[1]


def test_no_file_serves_smollm2_on_the_embedded_engine() -> None:
    cfg = load_config(None)
    assert [m.name for m in cfg.models] == ["smollm2"]
    assert cfg.models[0].backends[0].kind is BackendKind.EMBEDDED


def test_every_error_is_reported_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "server: {port: -1, colour: blue}\n"
        "models:\n"
        "  - name: m\n"
        "    fallback: [nope]\n"
        "    backends: [{name: a, kind: vllm}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(f)
    text = str(info.value)
    assert "server.port" in text
    assert "server.colour: unknown key" in text
    assert "needs a `url`" in text


def test_fallback_must_name_a_model(tmp_path: Path) -> None:
    f = tmp_path / "fb.yaml"
    f.write_text("models:\n  - {name: m, fallback: [ghost], backends: [{name: a, kind: embedded}]}\n")
    with pytest.raises(ConfigError, match="fallback 'ghost' is not a configured model"):
        load_config(f)


def test_env_and_cli_override_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("server: {port: 7000, host: 0.0.0.0}\n")
    monkeypatch.setenv("INFERLINE_SERVER__PORT", "7100")
    cfg = load_config(f)
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 7100)
    assert load_config(f, {"server.port": 7200}).server.port == 7200


def test_api_keys_never_show_in_repr(tmp_path: Path) -> None:
    f = tmp_path / "k.yaml"
    f.write_text("models:\n  - {name: m, backends: [{name: a, kind: openai, url: 'https://x', api_key: sk-SECRET}]}\n")
    cfg = load_config(f)
    assert "sk-SECRET" not in repr(cfg)
    assert cfg.models[0].backends[0].resolved_api_key() == "sk-SECRET"


def test_config_check_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("models:\n  - {name: m, backends: [{name: a, kind: vllm, url: 'http://127.0.0.1:8000'}]}\n")
    result = CliRunner().invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "model m: a (vllm)" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: 5\n")
    result = CliRunner().invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    missing = CliRunner().invoke(app, ["config", "check", str(tmp_path / "missing.yaml")])
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_docs_config_md_matches_the_code() -> None:
    assert (ROOT / "docs" / "config.md").read_text() == render(), "run: inferline config docs > docs/config.md"


def test_help_explains_every_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("serve", "engine", "config"):
        assert cmd in result.output
    serve = CliRunner().invoke(app, ["serve", "--help"])
    assert "--config" in serve.output and "--port" in serve.output and "SIGTERM" in serve.output


def test_docs_cover_every_section_and_render_types_for_readers() -> None:
    from inferline.config import InferlineConfig
    from inferline.config_docs import SECTIONS

    documented = {name.split("[")[0].split(".")[0].split(",")[0] for name, _ in SECTIONS}
    assert set(InferlineConfig.model_fields) <= documented, "a config section is missing from docs/config.md"
    text = render()
    assert "<enum" not in text and "<class" not in text
    assert "one of: least_loaded, round_robin" in text and "## `limits`" in text and "## `cache`" in text


@pytest.mark.parametrize(
    ("env", "value", "read"),
    [
        ("INFERLINE_SERVER__PORT", "7300", lambda c: c.server.port == 7300),
        ("INFERLINE_ROUTING__MAX_ATTEMPTS", "2", lambda c: c.routing.max_attempts == 2),
        ("INFERLINE_ADMISSION__QUEUE_TIMEOUT_S", "7.5", lambda c: c.admission.queue_timeout_s == 7.5),
        ("INFERLINE_LIMITS__STORE_TIMEOUT_S", "0.5", lambda c: c.limits.store_timeout_s == 0.5),
        ("INFERLINE_CACHE__ENABLED", "true", lambda c: c.cache.enabled is True),
        (
            "INFERLINE_SERVER__CORS_ORIGINS",
            '["https://a.example"]',
            lambda c: c.server.cors_origins == ["https://a.example"],
        ),
    ],
)
def test_every_section_is_overridable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, read: Any
) -> None:
    monkeypatch.setenv(env, value)
    assert read(load_config(None))


def test_a_typo_in_an_environment_override_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERLINE_SERVER__PROT", "1")
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        load_config(None)
    monkeypatch.delenv("INFERLINE_SERVER__PROT")
    monkeypatch.setenv("INFERLINE_SERVR__PORT", "1")
    with pytest.raises(ConfigError, match="INFERLINE_SERVR__PORT"):
        load_config(None)
