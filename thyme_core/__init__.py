"""thyme_core: the library behind thyme-pipeline.

Pure logic and its own I/O helpers, usable from a notebook. It never imports prefect: orchestration lives in
tasks/ and flows/, which call into this package.
"""

__version__ = "0.1.0"
