"""`DataError`: one bad record, named by file, 1-based line (or row) and field."""
from __future__ import annotations


class DataError(Exception):
    """One bad record: `file:line: field: message`."""

    def __init__(self, file, line: int, field: str, message: str):
        self.file, self.line, self.field, self.message = str(file), int(line), field, message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"

    def __reduce__(self):  # keep picklable across DataLoader workers
        return (DataError, (self.file, self.line, self.field, self.message))
