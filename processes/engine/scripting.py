"""Route every BPMN expression and script through Baton's sandbox.

SpiffWorkflow evaluates conditions, scripts, timers, multi-instance
expressions, pre/post scripts and DMN cells through its script engine, and
calls the *environment* directly for process completion conditions and message
correlation: plugging the sandbox in as the environment covers all of them.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment

from bpmn import sandbox


class SandboxEnvironment(BasePythonScriptEngineEnvironment):
    """Evaluate expressions in-process (checked, capped) and scripts in the sandbox pool."""

    def evaluate(self, expression: str, context: dict, external_context: dict | None = None) -> Any:
        return sandbox.evaluate(expression, context, external_context)

    def execute(self, script: str, context: dict, external_context: dict | None = None) -> bool:
        sandbox.execute(script, context, external_context)
        return True

    def call_service(self, context: dict, **kwargs: Any) -> Any:
        raise RuntimeError("service tasks run as Baton jobs, never inside the engine")


class SandboxScriptEngine(PythonScriptEngine):
    """The library's engine with the sandbox environment (and nothing else)."""

    def __init__(self) -> None:
        super().__init__(environment=SandboxEnvironment())


@lru_cache(maxsize=1)
def sandbox_script_engine() -> SandboxScriptEngine:
    """Return the process-wide sandbox engine (stateless, shared by all workflows)."""
    return SandboxScriptEngine()
