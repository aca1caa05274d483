"""MindSpore 2.8 backend: networks (SPEC 6) with torch-canonical structure and names (SPEC 11)."""
