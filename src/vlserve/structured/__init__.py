"""Structured output: the JSON formats a client may ask for, and checking answers against them."""

from vlserve.structured.formats import OutputFormat, parse_response_format, validate_output

__all__ = ["OutputFormat", "parse_response_format", "validate_output"]
