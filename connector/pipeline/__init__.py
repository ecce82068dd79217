"""The pipeline: what runs the stages, built from core decisions and the adapters."""
