"""Config validation: every problem is a ConfigError naming the key, and the app exits
non-zero with that one line; `--help` documents every flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from streamchat.config import ConfigError, load_config, parse_config

BASE = "name: Test\ninstructions: Be brief.\nmodel: test-model\n"

FUNCTION_TOOL = """
tools:
  - name: get_time
    handler: streamchat.demo_tools:get_time
    parameters: {type: object, properties: {}}
"""


def test_minimal_config_gets_defaults() -> None:
    config = parse_config(BASE)
    assert (config.name, config.instructions, config.model) == ("Test", "Be brief.", "test-model")
    assert config.backend == "responses"
    assert config.temperature is None and config.assistant_id is None and config.tools == ()
    assert config.ui.title == "Test"


def test_full_config_is_read() -> None:
    text = BASE + "backend: assistants\ntemperature: 1\nassistant_id: asst_1\n" + FUNCTION_TOOL
    text += "  - type: file_search\n    vector_store_ids: [vs_1]\nui:\n  title: T\n  examples: [a, b]\n"
    config = parse_config(text)
    assert config.backend == "assistants" and config.temperature == 1.0 and config.assistant_id == "asst_1"
    function, search = config.tools
    assert (function.type, function.name, function.handler) == ("function", "get_time", "streamchat.demo_tools:get_time")
    assert (search.type, search.options) == ("file_search", {"vector_store_ids": ["vs_1"]})
    assert config.ui.title == "T" and config.ui.examples == ("a", "b")
    assert config.sha256 == parse_config(text).sha256 != parse_config(BASE).sha256


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (BASE + "temprature: 0.5\n", "temprature"),  # unknown key (a typo)
        (BASE + "temperature: hot\n", "temperature"),
        (BASE + "temperature: true\n", "temperature"),  # a bool is not a number
        (BASE + "temperature: 2.5\n", "temperature"),
        (BASE + "temperature: -0.1\n", "temperature"),
        (BASE + "backend: bard\n", "backend"),
        (BASE + "assistant_id: 42\n", "assistant_id"),
        (BASE + "tools: {get_time: {}}\n", "tools"),
        (BASE.replace("name: Test", "name: 3"), "name"),
        (BASE.replace("model: test-model\n", ""), "model"),  # missing required key
        (BASE.replace("instructions: Be brief.\n", "instructions: ''\n"), "instructions"),
        (BASE + "ui:\n  titel: x\n", "ui.titel"),
        (BASE + "ui: [x]\n", "ui"),
        (BASE + "ui:\n  examples: [ok, {a: 1}]\n", "ui.examples[1]"),
        (BASE + "tools: [5]\n", "tools[0]"),
        (BASE + "tools:\n  - type: magic\n", "tools[0].type"),
        (BASE + "tools:\n  - name: f\n", "tools[0].handler"),
        (BASE + "tools:\n  - handler: m:f\n", "tools[0].name"),
        (BASE + "tools:\n  - name: f\n    handler: no_colon\n", "tools[0].handler"),
        (BASE + "tools:\n  - name: f\n    handler: m:f\n    parameters: [a]\n", "tools[0].parameters"),
        (BASE + "tools:\n  - name: f\n    handler: m:f\n    retries: 3\n", "tools[0].retries"),
        (BASE + "tools:\n  - name: f\n    handler: m:f\n    timeout: 0\n", "tools[0].timeout"),
        (FUNCTION_TOOL.replace("tools:\n", BASE + "tools:\n") + "  - type: web_search\n  - 7\n", "tools[2]"),
        (BASE + FUNCTION_TOOL + FUNCTION_TOOL.replace("tools:\n", ""), "tools"),  # the same name twice
    ],
)
def test_bad_config_names_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    message = str(info.value)
    assert message.startswith(f"{key}:"), message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["- a list\n", "just text\n", "name: [unclosed\n", ""])
def test_not_a_mapping_or_not_yaml_names_the_file(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^my\.yaml: "):
        parse_config(text, origin="my.yaml")


def test_load_config_reads_a_file_and_names_a_missing_one(tmp_path: Path) -> None:
    path = tmp_path / "assistant.yaml"
    path.write_text(BASE + "backend: chat\n", encoding="utf-8")
    assert load_config(path).backend == "chat"
    with pytest.raises(ConfigError, match=r"^config: file not found: .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    path.write_text(BASE + "colour: red\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^colour: unknown key"):
        load_config(path)


BUILTINS = {
    "code_interpreter": "  - type: code_interpreter\n",
    "file_search": "  - type: file_search\n    vector_store_ids: [vs_1]\n",
    "web_search": "  - type: web_search\n",
}


@pytest.mark.parametrize(
    ("tool", "backend"),
    [("web_search", "assistants"), ("code_interpreter", "chat"), ("file_search", "chat"), ("web_search", "chat")],
)
def test_a_built_in_tool_the_backend_lacks_is_refused_naming_both(tool: str, backend: str) -> None:
    """Refused at start, in one line naming the tool and the backend: never dropped."""
    text = BASE + FUNCTION_TOOL + BUILTINS[tool]
    for make in (
        lambda: parse_config(text + f"backend: {backend}\n"),
        lambda: parse_config(text).with_overrides(backend=backend),  # --backend / STREAMCHAT_BACKEND
    ):
        with pytest.raises(ConfigError) as info:
            make()
        message = str(info.value)
        assert message.startswith("tools[1]: ") and tool in message and backend in message, message
        assert "\n" not in message


@pytest.mark.parametrize(
    ("backends", "tool"),
    [
        (("responses", "assistants"), "code_interpreter"),
        (("responses", "assistants"), "file_search"),
        (("responses",), "web_search"),
    ],
)
def test_a_built_in_tool_the_backend_has_is_kept_with_its_options(backends: tuple[str, ...], tool: str) -> None:
    for backend in backends:
        config = parse_config(BASE + f"backend: {backend}\ntools:\n" + BUILTINS[tool])
        assert [(t.type, t.options) for t in config.tools] == [
            (tool, {"vector_store_ids": ["vs_1"]} if tool == "file_search" else {})
        ]


@pytest.mark.parametrize("backend", ["responses", "assistants"])
def test_file_search_without_stores_is_accepted(backend: str) -> None:
    """Without configured stores it searches the documents the user attaches (the
    session's own vector store)."""
    config = parse_config(BASE + f"backend: {backend}\ntools:\n  - type: file_search\n")
    assert [(t.type, t.options) for t in config.tools] == [("file_search", {})]


@pytest.mark.parametrize(
    ("tool", "backend", "key"),
    [
        ("  - type: web_search\n    serach_context_size: low\n", "responses", "tools[0].serach_context_size"),  # typo
        ("  - type: file_search\n    vector_store_ids: [v]\n    colour: red\n", "assistants", "tools[0].colour"),
        ("  - type: code_interpreter\n    container: 7\n", "responses", "tools[0].container"),  # wrong type
        ("  - type: file_search\n    vector_store_ids: vs_1\n", "responses", "tools[0].vector_store_ids"),
        ("  - type: file_search\n    vector_store_ids: [v]\n    filters: {}\n", "assistants", "tools[0].filters"),
        ("  - type: code_interpreter\n    file_ids: [f]\n", "responses", "tools[0].file_ids"),
    ],
)
def test_unknown_or_misplaced_built_in_tool_options_are_refused(tool: str, backend: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + f"backend: {backend}\ntools:\n" + tool)
    assert str(info.value).startswith(f"{key}: "), info.value


def test_overrides_are_validated_too() -> None:
    config = parse_config(BASE)
    assert config.with_overrides(backend="chat", model="other").backend == "chat"
    assert config.with_overrides(backend="chat", model="other").model == "other"
    with pytest.raises(ConfigError, match=r"^backend: "):
        config.with_overrides(backend="bard")


@pytest.mark.parametrize("path", ["assistant_config.yaml", "examples/frieza.yaml"])
def test_shipped_configs_are_valid(path: str) -> None:
    config = load_config(ROOT / path)
    assert config.name and config.instructions and config.model


# -- the app as a program ---------------------------------------------------------------


@pytest.fixture(scope="module")
def app_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run ``python app.py`` the ways the tests below need, at once (each run imports
    Gradio: seconds apiece). A missing file takes the same exit path as a bad key
    (``load_config`` raises the same error; tested above)."""
    folder = tmp_path_factory.mktemp("configs")
    bad = folder / "bad.yaml"
    bad.write_text(BASE + "temperature: warm\n", encoding="utf-8")
    cases = {
        "bad key": ["--config", str(bad)],
        "help": ["--help"],
    }
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY" and not k.startswith("STREAMCHAT_")}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in cases.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=90)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def test_app_exits_with_one_line_naming_the_bad_key(app_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = app_runs["bad key"]
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "temperature" in lines[0]
    assert result.stdout == ""


def test_app_help_documents_every_flag(app_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = app_runs["help"]
    assert result.returncode == 0, result.stderr
    for flag in ("--config", "--backend", "--model", "--record", "--replay", "--speed", "--cli"):
        assert flag in result.stdout, flag
    for variable in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "STREAMCHAT_CONFIG", "STREAMCHAT_BACKEND", "STREAMCHAT_MODEL"):
        assert variable in result.stdout, variable
