"""gazepref: implicit (mouse, webcam gaze) and text feedback from LLM chats, turned into rewards
for aligning LLMs with DPO.

Subpackages: :mod:`gazepref.capture_site` (the study site), :mod:`gazepref.signals` (features),
:mod:`gazepref.models` (reward models, DPO), :mod:`gazepref.datasets` (readers, exporters,
preference sets). The recording schema is :mod:`gazepref.schema`, its storage :mod:`gazepref.store`.
"""

__version__ = "0.1.0"


class UserError(Exception):
    """A mistake by the user (missing file, wrong layout, bad option): reported in one line."""
