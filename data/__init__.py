"""Bundled with the package as ``backpain_analysis._data`` (see pyproject.toml): the data dictionary and unit costs."""
