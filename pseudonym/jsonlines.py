"""JSON lines in and out, as Ralph pipes them: one record a line, ``.gz`` by file name.

Parsing uses orjson, which is several times faster than the standard library at writing
(see the benchmark), with the standard library as the fallback for what orjson refuses
but JSON allows. Output is written to a temporary file beside the target and renamed
only when the run completes, so a failed or interrupted run never leaves a file that
looks finished.

Edge cases of JSON, decided once for every entry point:

- Integers beyond 64 bits are kept exactly (orjson would turn them into floats: any run
  of 19 digits sends the line to the standard library parser).
- ``NaN``, ``Infinity``, numbers that overflow a double (``1e400``) and integers of more
  than 4,300 digits (Python's limit) are refused: the record is rejected
  (``not-json-number``).
- Duplicate keys: the last value wins, as in orjson, Python, JavaScript and Ralph. The
  output is written from the parsed object, so it never holds the discarded value.
- Nesting deeper than the parsers or the plan can follow (about 1,000 levels) rejects
  the record (``too-deep``), never the run.
- A lone UTF-16 surrogate escape (``"\\ud800"``) is valid JSON but not Unicode: it is
  read, and written back escaped.
- Lines have no length limit: a 50 MB record is read whole, so memory must allow it.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import io
import json
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

import orjson

from .errors import RecordError, StreamError

BOM = b"\xef\xbb\xbf"


_DIGITS = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_RUN = b"0" * 19
"""19 digits in a row: perhaps an integer orjson cannot hold (beyond 64 bits). Found by
``translate`` then ``in``, about ten times faster than a regular expression."""


class _NotJsonNumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJsonNumber(name)


def _finite(text: str) -> float:
    x = float(text)
    if math.isinf(x):  # 1e400: valid JSON grammar, but no double holds it
        raise _NotJsonNumber(text)
    return x


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # beyond Python's 4,300-digit limit on reading integers
        raise _NotJsonNumber("integer") from None


def loads(raw: bytes) -> Any:
    """Parse one JSON text; raise RecordError naming the kind of problem, never the text."""
    if _LONG_RUN not in raw.translate(_DIGITS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        failure = RecordError("invalid-utf8", f"not UTF-8 (bad byte at offset {e.start})")
    else:
        try:
            return json.loads(text, parse_constant=_no_constant, parse_float=_finite,
                              parse_int=_int)
        except RecursionError:
            failure = RecordError("too-deep", "the record is nested too deeply")
        except _NotJsonNumber:
            failure = RecordError("not-json-number", "NaN, Infinity, or a number out of "
                                  "range (beyond a double, or an integer of more than "
                                  "4,300 digits)")
        except ValueError as e:
            where = f" at column {e.colno}" if isinstance(e, json.JSONDecodeError) else ""
            failure = RecordError("invalid-json", f"not valid JSON{where}")
    raise failure  # outside the handlers: the parser's error holds the whole line


def dumps(record: Any) -> bytes:
    """JSON bytes; what orjson refuses (lone surrogates, huge integers, nesting beyond 255)
    goes through the standard library, escaped to ASCII so that every string survives as
    it was parsed. RecordError when the record has no JSON form."""
    try:
        return orjson.dumps(record)
    except TypeError:  # integers beyond 64 bits, lone surrogates, nesting beyond 255
        pass
    try:
        text = json.dumps(record, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    except RecursionError:
        raise RecordError("too-deep", "the record is nested too deeply to write") from None
    except ValueError:
        raise RecordError("not-json-number", "the record holds NaN or Infinity") from None
    except TypeError:
        raise RecordError("not-json", "the record holds a value JSON cannot represent") from None
    return text.encode("ascii")


def open_input(path: str | os.PathLike[str] | None) -> IO[bytes]:
    """A binary stream for a path (``-`` or None: standard input), gunzipped by name."""
    if path is None or str(path) == "-":
        return sys.stdin.buffer
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rb")
    return open(p, "rb")


def iter_lines(stream: IO[bytes]) -> Iterator[bytes]:
    """Lines without their ending (LF or CRLF); a leading byte-order mark is dropped."""
    first = True
    for line in stream:
        if first:
            first = False
            if line.startswith(BOM):
                line = line[3:]
        if line.endswith(b"\n"):
            line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        yield line


SYNC_BYTES = 32 << 20
STARTS_WRITEBACK = sys.platform.startswith("linux") and hasattr(os, "posix_fadvise")
"""Whether ``posix_fadvise(DONTNEED)`` starts writing dirty pages (Linux does; the
standard leaves it open)."""


UNFINISHED_GZIP = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
"""A gzip member's header and nothing after it: ``gzip -d`` reports an unexpected end."""


class AtomicOutput:
    """Write to a temporary file and publish it (rename) only on ``commit``.

    A ``.gz`` path is compressed on the way, unless ``precompressed``: the caller then
    writes gzip members itself (several members make one valid gzip file). A symbolic
    link is written through: the file it names is replaced. A device or a named pipe
    (``/dev/null``, a FIFO) is written in place, as standard output is: renaming over it
    would replace it with a regular file. A directory is refused before anything is
    written, so that no run is recorded as completed and then fails to publish.
    """

    def __init__(self, path: str | os.PathLike[str] | None, precompressed: bool = False
                 ) -> None:
        self.name = "" if path is None else str(path)
        self.path = None if path is None or self.name == "-" else Path(path)
        self.gzip = self.path is not None and self.path.suffix == ".gz"
        self._compress = self.gzip and not precompressed
        self._tmp: str | None = None
        self._direct = False
        self._synced = 0
        self.stream: IO[bytes]

    def __enter__(self) -> AtomicOutput:
        if self.path is None:
            self.stream = sys.stdout.buffer
            if isinstance(self.stream, io.RawIOBase):  # python -u: a raw write may be partial
                self.stream = _Unowned(self.stream)
            return self
        if not self.name:
            raise StreamError("the output file name is empty; no output file was published")
        try:
            st: os.stat_result | None = os.stat(self.path)  # links followed
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise StreamError(f"{self.path}: cannot write output ({e.strerror}); no output "
                              "file was published") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise StreamError(f"{self.path}: is a directory, not an output file; no output "
                              "file was published")
        fd = _open_descriptor(self.name, st)
        if fd is not None:  # /dev/stdout, /dev/fd/3: the stream the shell opened, as it is
            try:
                if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                    raise OSError(errno.EBADF, "not open for writing")
                self._raw = self.stream = os.fdopen(os.dup(fd), "wb")
            except OSError as e:
                raise StreamError(f"{self.name}: cannot write output ({e.strerror}); "
                                  "nothing was written") from None
        elif st is not None and not stat.S_ISREG(st.st_mode):
            self._raw = self.stream = open(self.path, "wb")
        else:
            target = Path(os.path.realpath(self.path))
            self.path = target
            tmp_fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                                 dir=target.parent)
            self._raw = self.stream = os.fdopen(tmp_fd, "wb")
            with suppress(OSError):  # some file systems (vfat, CIFS) refuse modes
                os.fchmod(tmp_fd, _published_mode(st))
        if self._tmp is None:
            self._direct = True
            self.path = None  # written like standard output from here on
        try:
            if self._compress:
                self.stream = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw,
                                            compresslevel=6, mtime=0)
        except BaseException:  # Ctrl-C here too must not leave the temporary file
            self.__exit__()
            raise
        return self

    @property
    def direct(self) -> bool:
        """Written in place (standard output, a device, a pipe): nothing is published, and
        a failed run leaves what it wrote there."""
        return self.path is None

    def sync_so_far(self, wait: bool = False) -> None:
        """Have the disk take what the file holds, once ``SYNC_BYTES`` more were written:
        otherwise the whole output waits in memory for the fsync in ``commit``, which then
        writes it all while nothing else runs (0.3 to 0.9 s a gigabyte here).

        On Linux this only starts the writes and the run goes on (``posix_fadvise``
        DONTNEED; a write error still surfaces at ``commit``'s fsync). Elsewhere, only a
        caller with idle time (``wait``: the parent of ``--workers``) writes them, with
        ``fdatasync``."""
        if self.path is None or not (wait or STARTS_WRITEBACK):
            return
        self._raw.flush()
        end = self._raw.tell()
        if end - self._synced >= SYNC_BYTES:
            fd = self._raw.fileno()
            if STARTS_WRITEBACK:
                with suppress(OSError):  # advice only: commit's fsync writes what is left
                    os.posix_fadvise(fd, self._synced, end - self._synced,
                                     os.POSIX_FADV_DONTNEED)
            else:
                getattr(os, "fdatasync", os.fsync)(fd)  # no fdatasync on macOS
            self._synced = end

    def commit(self, before_publish: Callable[[], Any] | None = None) -> None:
        """Flush everything to disk, call ``before_publish`` (the run's audit entry, so that
        no output is ever published without one), then publish by renaming."""
        self.stream.flush()
        if self._direct:
            if self.stream is not self._raw:
                self.stream.close()
            self._raw.close()
        elif self.path is not None:
            if self.stream is not self._raw:
                self.stream.close()
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()
        if before_publish is not None:
            before_publish()
        if self.path is not None:
            os.replace(self._tmp, self.path)  # type: ignore[arg-type]
            self._tmp = None

    def __exit__(self, *exc: Any) -> None:
        if isinstance(getattr(self, "stream", None), _Unowned):  # what it was given goes out
            self.stream.close()
        if self._direct and not self._raw.closed:  # a failed run: its reader must see it
            with suppress(OSError, ValueError):
                if self.gzip and self.stream is self._raw:  # whole members so far: add half
                    self._raw.write(UNFINISHED_GZIP)
                self._raw.close()  # before the gzip stream: that one then gets no end either
            with suppress(OSError, ValueError):
                self.stream.close()
        if self._tmp is not None:
            for f in (self.stream, self._raw):
                with suppress(OSError):  # e.g. a full disk when flushing what is buffered
                    f.close()
            with suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None


def _published_mode(st: os.stat_result | None) -> int:
    """The mode the output gets: the replaced file's permission bits (never its set-id
    bits), or what creating it would give under the umask (``mkstemp`` makes the
    temporary file readable by its owner only)."""
    if st is not None:
        return stat.S_IMODE(st.st_mode) & 0o777
    umask = os.umask(0o077)
    os.umask(umask)
    return 0o666 & ~umask


def _open_descriptor(name: str, st: os.stat_result | None) -> int | None:
    """The descriptor an output path names, when it names one the process holds: written
    to in place, never renamed over (``-o /dev/stdout >> log`` appends to ``log``)."""
    m = re.fullmatch(r"/(?:dev/fd|proc/self/fd)/([0-9]{1,9})", os.path.normpath(name))
    if m:
        return int(m[1])
    if st is not None:
        for fd in (1, 2):
            with suppress(OSError):
                if os.path.samestat(st, os.fstat(fd)):
                    return fd
    return None


class _Unowned(io.BufferedWriter):
    """A buffer over a raw stream it does not own (standard output under ``python -u``):
    its writes are whole, and dropping it flushes but never closes the stream."""

    def close(self) -> None:
        with suppress(OSError, ValueError):  # ValueError: detached already
            self.flush()
            self.detach()


def write_lines(stream: IO[bytes], lines: Iterable[bytes]) -> None:
    write = stream.write
    for line in lines:
        write(line)
        write(b"\n")
