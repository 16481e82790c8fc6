"""Pydantic models: the single source of the CRD schemas."""
