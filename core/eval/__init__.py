"""Measurements of a trained model's behaviour (tool use: `core.eval.tool_use`)."""
