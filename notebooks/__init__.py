"""Bundled with the package as ``backpain_analysis._notebooks`` (see pyproject.toml): report.yaml and the chapter notebooks."""
