"""Token ids -> text pieces, for streaming: incremental detokenization and stop handling, backend-agnostic.

Byte-level BPE tokens can end in the middle of a UTF-8 character (a Chinese character or an emoji is 3-4
bytes, often split over 2-4 tokens), and decoding such a prefix yields U+FFFD. `IncrementalDecoder` keeps a
window (the offsets scheme of vLLM's `detokenize_incrementally`) and only releases text once the window
no longer ends in U+FFFD. `TextStream` adds stop strings on top: text that could still turn into a stop
string is held back, and the stream is cut exactly before the first stop string. Both backends feed their
sampled ids through this one class, so the torch and llama.cpp backends stop identically.
"""
from __future__ import annotations

from typing import Callable, Iterable

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Feed ids one at a time; get back the newly stable text (possibly "")."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self.ids: list[int] = []
        self._prefix = 0  # start of the window re-decoded each time (a known character boundary)
        self._read = 0    # ids up to here have been released as text

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        window_text = self._decode(self.ids[self._prefix:])
        if len(window_text) <= len(prefix_text) or window_text.endswith(REPLACEMENT):
            return ""  # an unfinished character (or a token that decodes to nothing yet)
        piece = window_text[len(prefix_text):]
        self._prefix, self._read = self._read, len(self.ids)
        return piece

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character decodes to U+FFFD: the bytes were invalid)."""
        prefix_text = self._decode(self.ids[self._prefix:self._read])
        window_text = self._decode(self.ids[self._prefix:])
        self._prefix = self._read = len(self.ids)
        return window_text[len(prefix_text):]


def held_suffix(text: str, stops: Iterable[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string (or tag)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


class TextStream:
    """Turns a stream of sampled ids into safe text pieces and decides when generation must end.

    Call `push(id)` for every sampled id; it returns the piece to show now. After it, `finish_reason` is
    "stop" when a stop id or stop string ended the stream; call `finish("length")` when the token budget ran out
    to release held-back text. `text` is the whole visible completion, `ids` every sampled id (the stop id
    included, as it was generated).
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Iterable[str] = (),
                 stop_ids: Iterable[int] = ()):
        self._decoder = IncrementalDecoder(decode)
        self.stop = [s for s in stop if s]
        self.stop_ids = set(stop_ids)
        self.ids: list[int] = []
        self._text = ""       # stable decoded text (not cut)
        self._emitted = 0     # chars of _text already returned
        self.finish_reason: str | None = None

    @property
    def text(self) -> str:
        return self._text[:self._emitted]

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token_id: int) -> str:
        if self.done:
            raise RuntimeError("TextStream already finished; start a new one per generation")
        self.ids.append(token_id)
        if token_id in self.stop_ids:
            return self.finish("stop")
        self._text += self._decoder.push(token_id)
        return self._release()

    def finish(self, reason: str) -> str:
        """End the stream (reason "stop" or "length") and return the last piece, held text included."""
        if self.done:
            return ""
        self._text += self._decoder.flush()
        piece = self._release(final=True)
        if self.finish_reason is None:
            self.finish_reason = reason
        return piece

    def _release(self, final: bool = False) -> str:
        if self.stop:
            # A stop string may straddle pieces: search from just before what was already released.
            start = max(0, self._emitted - max(len(s) for s in self.stop) + 1)
            hits = [i for s in self.stop if (i := self._text.find(s, start)) != -1]
            if hits:
                cut = max(min(hits), self._emitted)
                piece, self._text = self._text[self._emitted:cut], self._text[:cut]
                self._emitted = cut
                self.finish_reason = "stop"
                return piece
        end = len(self._text) if final else len(self._text) - held_suffix(self._text, self.stop)
        end = max(end, self._emitted)
        piece = self._text[self._emitted:end]
        self._emitted = end
        return piece
