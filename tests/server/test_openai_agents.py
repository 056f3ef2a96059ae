"""An agent framework end to end: the OpenAI Agents SDK (``openai-agents``, module ``agents``)
runs a task against a real server on ``sim`` through the Responses API, with a function tool
the framework runs itself (a client-side tool: the response hands the call over, the
framework runs it and continues with ``previous_response_id``), and gets the final answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from asynclm.server.config import ServerConfig
from tests.server.conftest import running_server

openai = pytest.importorskip("openai")
agents = pytest.importorskip("agents", reason="the openai-agents package is not installed")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running_server(ServerConfig(tool_modules=("tests.server.toolmod",))) as url:
        yield url


def _agent(client: object, tools: list[object]) -> object:
    model = agents.OpenAIResponsesModel(model="sim", openai_client=client)
    return agents.Agent(name="forecaster", instructions="Use the tools, then answer.",
                        model=model, tools=tools)


def _client(base_url: str) -> object:
    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="-", max_retries=0)


def test_agent_runs_a_client_side_tool_and_answers(server: str) -> None:
    seen: list[str] = []

    @agents.function_tool
    def city_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async def main() -> object:
        async with _client(server) as client:
            return await agents.Runner.run(
                _agent(client, [city_weather]), "Paris", max_turns=4,
                auto_previous_response_id=True,
                run_config=agents.RunConfig(tracing_disabled=True))

    result = asyncio.run(main())
    assert seen == ["Paris"]  # the framework ran its own tool, once
    answer = result.final_output
    assert isinstance(answer, str) and 'city_weather: "sunny in Paris"' in answer
    kinds = [item.type for item in result.new_items]
    assert kinds.index("tool_call_item") < kinds.index("tool_call_output_item")
    assert kinds[-1] == "message_output_item"


def test_agent_streams_with_a_server_tool(server: str) -> None:
    """The same framework, streaming, with a tool the server runs (the framework sees the
    model's answer that quotes the server's result)."""
    async def main() -> tuple[object, list[str]]:
        async with _client(server) as client:
            run = agents.Runner.run_streamed(
                _agent(client, []), "hello", max_turns=2, run_config=agents.RunConfig(
                    tracing_disabled=True, model_settings=agents.ModelSettings(
                        extra_body={"tools": [{"type": "function", "name": "echo"}]})))
            kinds = [event.type async for event in run.stream_events()]
            return run.final_output, kinds

    answer, kinds = asyncio.run(main())
    assert isinstance(answer, str) and 'echo: "HELLO"' in answer
    assert "raw_response_event" in kinds
