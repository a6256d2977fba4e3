"""CSV and TSV records, read the way the file was written, one record at a time.

The rule (RFC 4180, lenient where a strict reader would change the text):

- records end at a line break; a field ends at the delimiter;
- a field that starts with a double quote is a *quoted field* only if the quotes close it
  properly: the closing quote is followed by the delimiter or the end of the record, and
  quotes inside are doubled (`""`). Its text is what lies between the quotes (with `""` read
  as `"`), line breaks and delimiters included;
- any other field is taken verbatim, quotes and all: `"He said "hi" and left` stays exactly
  that (a strict reader makes it `He said hi" and left`, or swallows the following lines);
- a line break written as CRLF ends a record like LF does; a CR inside a quoted field stays.

Records are produced from an iterator of lines, so a file of any size is read with the
memory of one record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def records(lines: Iterable[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the record starts, fields) for each non-blank record.

    `lines` are the file's lines without their final "\\n" (a "\\r" before it is removed
    here, outside quoted fields).
    """
    it = iter(lines)
    pending: list[str] = []  # lines read ahead while trying to close a multi-line quoted field
    number = 0

    def next_line() -> str | None:
        nonlocal number
        if pending:
            line = pending.pop(0)
        else:
            line = next(it, None)
        if line is not None:
            number += 1
        return line

    while True:
        line = next_line()
        if line is None:
            return
        start = number
        if '"' not in line:
            line = line.removesuffix("\r")
            if line.strip():
                yield start, line.split(sep)
            continue
        fields: list[str] = []
        pos = 0
        while True:
            if line.startswith('"', pos):
                parsed = _quoted(line, pos, sep, it, pending)
                if parsed is not None:
                    value, line, pos, used = parsed
                    number += used
                    fields.append(value)
                    if pos >= len(line):
                        break
                    pos += 1  # the delimiter after the closing quote
                    continue
            end = line.find(sep, pos)
            if end < 0:
                fields.append(line[pos:].removesuffix("\r"))
                break
            fields.append(line[pos:end])
            pos = end + 1
        if len(fields) > 1 or fields[0].strip():
            yield start, fields


def _quoted(
    line: str, pos: int, sep: str, it: Iterator[str], pending: list[str]
) -> tuple[str, str, int, int] | None:
    """The quoted field starting at line[pos], or None when the quotes do not close it.

    Returns (value, the line it ends on, the position after its closing quote, how many
    extra lines it took). Lines read ahead for a field that turns out not to be quoted go
    back to `pending`, to be read again as records of their own.
    """
    parts: list[str] = []
    consumed: list[str] = []
    current, j = line, pos + 1
    while True:
        k = current.find('"', j)
        if k < 0:
            following = pending[len(consumed)] if len(consumed) < len(pending) else next(it, None)
            if following is None:
                break  # the file ends inside the quotes: not a quoted field
            if len(consumed) >= len(pending):
                pending.append(following)
            consumed.append(following)
            parts.append(current[j:] + "\n")
            current, j = following, 0
            continue
        if current.startswith('""', k):
            parts.append(current[j:k] + '"')
            j = k + 2
            continue
        after = current[k + 1 :]
        if after == "" or after == "\r" or after.startswith(sep):
            parts.append(current[j:k])
            del pending[: len(consumed)]
            end = k + 1 if after != "\r" else len(current)
            return "".join(parts), current, end, len(consumed)
        break  # a quote followed by something else: the field is not quoted
    return None


def format_field(value: str, sep: str) -> str:
    """A field as written by `records`' rule: quoted (inner quotes doubled) when it holds the
    delimiter, a quote, CR or LF; as is otherwise. Every value reads back exactly.

    (csv and pandas writers leave a lone CR unquoted, which a reader then splits at.)
    """
    if any(c in value for c in (sep, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def format_record(values: list[str], sep: str) -> str:
    return sep.join(format_field(v, sep) for v in values) + "\n"
