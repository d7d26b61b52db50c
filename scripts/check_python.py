"""Fail early, in one line, when the Python that creates .venv is not 3.11."""
import sys

if sys.version_info[:2] != (3, 11):
    sys.exit(f"gazepref needs Python 3.11 (torch 2.13.0 and mediapipe 0.10.21 wheels); this is "
             f"{sys.version.split()[0]}. Run: make PYTHON=python3.11 ...")
