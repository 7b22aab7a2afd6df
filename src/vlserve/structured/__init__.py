"""Structured output: the formats a client may ask for (JSON Schemas, vLLM's structured_outputs), and answer checks."""

from vlserve.structured.formats import OutputFormat, parse_response_format, validate_output
from vlserve.structured.outputs import parse_structured_outputs

__all__ = ["OutputFormat", "parse_response_format", "parse_structured_outputs", "validate_output"]
