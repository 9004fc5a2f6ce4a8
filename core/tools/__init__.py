"""Tools a model can call in a chat (the studio's Chat pane, `minimind chat --tools`): a registry with safe
built-ins (calculator, unit conversion, date/time). Names and arguments follow MiniMind-3's agent tools, so a
model trained on its tool-call data calls them as it learned to. See docs/inference.md."""
from core.tools.registry import Tool, ToolRegistry, tool_message
from core.tools.result import ToolError, error_result


def builtin_registry() -> ToolRegistry:
    from core.tools import calculator, clock, units

    registry = ToolRegistry()
    for tool in (calculator.TOOL, units.TOOL, clock.TOOL):
        registry.register(tool)
    return registry


__all__ = ["Tool", "ToolError", "ToolRegistry", "builtin_registry", "error_result", "tool_message"]
