"""Thin kopf handlers: each calls one idempotent reconcile."""
