"""The command line: demo on the simulator, trace rendering, and `asynclm run` (its session
logic is tested in tests/test_cli_run.py). The bench commands: tests/bench/test_commands.py."""

from __future__ import annotations

import pytest

typer_testing = pytest.importorskip("typer.testing")

from asynclm.cli import app  # noqa: E402

runner = typer_testing.CliRunner()


def test_sim_demo_writes_traces_and_reports_speedup(tmp_path):
    result = runner.invoke(app, ["demo", "--engine", "sim", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "speedup async vs sync" in result.output
    for name in ("trace-sync.json", "trace-async.json", "gantt-sync-vs-async.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_demo_refuses_an_unknown_dialect(tmp_path):
    result = runner.invoke(app, ["demo", "--dialect", "klingon", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "pythonic" in result.output
    assert not list(tmp_path.iterdir())


def test_trace_command_renders_a_saved_trace(tmp_path):
    runner.invoke(app, ["demo", "--engine", "sim", "--out", str(tmp_path)])
    png = tmp_path / "out.png"
    result = runner.invoke(app, ["trace", str(tmp_path / "trace-async.json"), "--png", str(png)])
    assert result.exit_code == 0, result.output
    assert "decode" in result.output and png.read_bytes()[:4] == b"\x89PNG"


def test_version():
    from asynclm import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"asynclm {__version__}"


def test_unknown_model_is_a_clear_error():
    result = runner.invoke(app, ["models", "pull", "no-such-model"])
    assert result.exit_code == 1
    assert "unknown model" in result.output


def test_engine_openai_needs_a_base_url():
    for args in (["demo", "--engine", "openai"],
                 ["bench", "bfcl", "--engine", "openai", "--limit", "1"],
                 ["run", "hello", "--engine", "openai"]):
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert "base-url" in result.output.replace("_", "-"), result.output



@pytest.mark.slow
def test_run_with_a_real_model_and_an_mcp_server(tmp_path):
    """``asynclm run`` end to end: the bundled 0.5B model in-process, the tools of a real MCP
    server (started and stopped by the command) and of a module, a saved trace."""
    import sys
    from pathlib import Path

    from asynclm.trace import Trace

    pytest.importorskip("llama_cpp")
    pytest.importorskip("mcp")
    server = Path(__file__).parent / "tools" / "mcp_server.py"
    trace = tmp_path / "trace.json"
    result = runner.invoke(app, [
        "run", "What time is it in Oslo?", "--model", "qwen2.5-coder-0.5b", "--threads", "2",
        "--max-tokens", "60", "--mcp", f"{sys.executable} {server}",
        "--tools-module", "tests.server.toolmod", "--trace", str(trace)])
    assert result.exit_code == 0, result.output
    assert "tools: echo, add, get_time, profile, steps, fail, hang, crash" in result.output
    assert " tokens; prefill " in result.output  # the summary line
    t = Trace.load(trace)
    assert t.breakdown().n_tokens > 0


def test_tools_module_in_the_current_directory_is_importable(tmp_path, monkeypatch):
    import sys

    from asynclm import cli
    from asynclm.tools import Toolbox

    (tmp_path / "my_cwd_tools.py").write_text(
        "from asynclm.tools import tool\n\n@tool\ndef ping() -> str:\n"
        "    '''Pong.'''\n    return 'pong'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    with pytest.raises(ModuleNotFoundError):
        Toolbox.from_module("my_cwd_tools")
    cli._import_from_cwd()
    assert list(Toolbox.from_module("my_cwd_tools")) == ["ping"]


def test_run_reports_tool_setup_errors_in_one_line():
    # imported before CliRunner swaps sys.stderr: the MCP client's default error log is bound
    # at import time, and a test runner's stand-in has no file descriptor
    pytest.importorskip("mcp")
    base = ["run", "x", "--engine", "openai", "--base-url", "http://127.0.0.1:9"]
    for extra, message in ((["--mcp", "/nonexistent/mcp-server"], "No such file"),
                           (["--tools-module", "no_such_mod"], "No module named 'no_such_mod'")):
        result = runner.invoke(app, base + extra)
        assert result.exit_code == 1, result.output
        assert "error:" in result.output and message in result.output
        assert "Traceback" not in result.output


def test_models_list_piped_prints_whole_names():
    """Not on a terminal (CliRunner's output is a pipe): one tab-separated line per model with
    whole values, never a table cut at 80 columns."""
    from asynclm.models import list_models

    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split("\t")[0] for line in lines] == [m.name for m in list_models()]
    for line, m in zip(lines, list_models(), strict=True):
        name, size, assembled, default, path, _description, dialect = line.split("\t")
        assert (name, int(size), path) == (m.name, m.size, str(m.path))
        assert dialect == (m.dialect or "auto")
        assert assembled == ("yes" if m.assembled else "no")
        assert default == ("yes" if m.default else "no")
    assert any(len(line) > 80 for line in lines)  # nothing cut to a terminal's width


def test_models_list_json():
    import json

    from asynclm.models import list_models

    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == [m.name for m in list_models()]
    assert set(rows[0]) == {"name", "size", "assembled", "default", "dialect", "description",
                            "path"}
    assert [r["dialect"] for r in rows] == [m.dialect for m in list_models()]
    assert all(isinstance(r["size"], int) and isinstance(r["assembled"], bool) for r in rows)
