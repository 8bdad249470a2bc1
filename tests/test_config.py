"""Config: validation with every error and its YAML path, precedence, the CLI, and docs/config.md in sync."""

from __future__ import annotations

from pathlib import Path

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
