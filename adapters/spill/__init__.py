"""The spill adapter: a write queue's overflow on local disk (:class:`~domain.ports.SpillBuffer`)."""

from adapters.spill.spill_file import FileSpillBuffer, SpillCorrupted, SpillLocked, session_directory, spilled_sessions

__all__ = ["FileSpillBuffer", "SpillCorrupted", "SpillLocked", "session_directory", "spilled_sessions"]
