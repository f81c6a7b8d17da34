"""Judging a JPEG from its marker segments, without decoding it (the preflight of a run).

:func:`jpeg_structure_problem` reads what libjpeg reads before it decodes a pixel and refuses
what libjpeg would refuse: segments that run past the end, unknown markers, and tables
libjpeg rejects (quantisation and Huffman tables, frame and scan headers), then looks for
the end-of-image marker after the image data (a file cut short has none).

Measured by fuzzing (tests/test_decode_once.py): of 600 small JPEGs (baseline, progressive,
gray, EXIF) with two random bytes in their headers, TensorFlow refused 279 and this check
names 272 of them (the other 7: progressive files whose damage shows in a later scan), and
it refuses no file TensorFlow decodes. Damage inside the entropy-coded data is decoded by
libjpeg (PIL's and TensorFlow's) with a warning, so a full decode does not find it either;
what still fails in the input pipeline is skipped there (``skip_undecodable``).
"""

from __future__ import annotations

_SOF = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # frame headers (DHT, JPG and DAC are not)
_KNOWN = _SOF | {0xC4, 0xCC, 0xDB, 0xDD, 0xDA, 0xFE, *range(0xE0, 0xF0)}


def _dqt(seg: bytes, tables: set[int]) -> str | None:
    i = 0
    while i < len(seg):
        pq, tq = seg[i] >> 4, seg[i] & 15
        if pq > 1 or tq > 3:
            return f"bad quantisation table header 0x{seg[i]:02x}"
        i += 1 + 64 * (pq + 1)
        if i > len(seg):
            return "quantisation table runs past its segment"
        tables.add(tq)
    return None


def _dht(seg: bytes, tables: set[tuple[int, int]]) -> str | None:
    i = 0
    while i < len(seg):
        if i + 17 > len(seg):
            return "Huffman table runs past its segment"
        tc, th = seg[i] >> 4, seg[i] & 15
        counts = seg[i + 1 : i + 17]
        total = sum(counts)
        if tc > 1 or th > 3 or total > 256 or i + 17 + total > len(seg):
            return "bad Huffman table definition"
        code = 0
        for bits, count in enumerate(counts, start=1):  # the codes must fit their lengths (libjpeg's check)
            code += count
            if code > (1 << bits):
                return "bad Huffman table definition (codes overflow)"
            code <<= 1
        if tc == 0 and any(v > 15 for v in seg[i + 17 : i + 17 + total]):
            return "bad Huffman table definition (DC symbol over 15)"
        tables.add((tc, th))
        i += 17 + total
    return None


def _sof(seg: bytes, quant: set[int]) -> tuple[str | None, dict[int, int]]:
    if len(seg) < 6 or seg[0] not in (8, 12) or int.from_bytes(seg[3:5], "big") == 0:
        return "bad frame header (precision or width)", {}
    nf = seg[5]
    if not 1 <= nf <= 4 or len(seg) != 6 + 3 * nf:
        return f"bad frame header ({nf} components)", {}
    comps = {}
    for k in range(nf):
        cid, hv, tq = seg[6 + 3 * k : 9 + 3 * k]
        if not (1 <= hv >> 4 <= 4 and 1 <= hv & 15 <= 4):
            return "bad sampling factors", {}
        if tq > 3 or tq not in quant:
            return f"quantisation table {tq} is not defined", {}
        comps[cid] = tq
    return None, comps


def _sos(seg: bytes, comps: dict[int, int], sequential: bool) -> str | None:
    if not comps:
        return "scan before the frame header"
    ns = seg[0] if seg else 0
    if not 1 <= ns <= 4 or len(seg) != 4 + 2 * ns:
        return f"bad scan header ({ns} components)"
    for k in range(ns):
        cs, t = seg[1 + 2 * k], seg[2 + 2 * k]
        if cs not in comps:
            return f"scan names component {cs}, which the frame does not have"
        # A missing table is no error (libjpeg-turbo supplies the standard ones), but an index over 3 is,
        # where both are used (sequential scans; a progressive scan uses one of them, or none).
        if sequential and (t >> 4 > 3 or t & 15 > 3):
            return f"scan names Huffman table 0x{t:02x}"
    return None


def jpeg_structure_problem(data: bytes) -> str | None:
    """Why a JPEG's bytes cannot decode, from its markers and tables alone; None if they look whole.

    Walks the segments from SOI to the first SOS, checking each one libjpeg reads before the
    image data; then looks for the EOI marker after it: in entropy-coded data a 0xFF byte is
    followed by 0x00 or a restart marker, so the first FFD9 after SOS ends the image (a
    thumbnail's EOI inside an EXIF segment comes before SOS and does not count). A problem
    that means the file was cut short contains the word "truncated".
    """
    n = len(data)
    if n < 4 or data[:2] != b"\xff\xd8":
        return "no JPEG start-of-image marker"
    quant: set[int] = set()
    huff: set[tuple[int, int]] = set()
    comps: dict[int, int] = {}
    sequential = False
    pos = 2
    while True:
        while pos + 1 < n and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > n:
            return f"file is truncated: ends inside the header at byte {n}"
        if data[pos] != 0xFF:  # libjpeg skips stray bytes to the next marker (with a warning)
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                return f"file is truncated: no marker after byte {pos} of the header"
            pos = nxt
            continue
        marker = data[pos + 1]
        if marker == 0x01:  # TEM: no length
            pos += 2
            continue
        if marker == 0xD9:
            return "end-of-image marker before any image data"
        if marker not in _KNOWN:
            return f"unsupported marker 0x{marker:02x} at byte {pos}"
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return f"segment length {length} at byte {pos}"
        if pos + 2 + length > n:
            return f"file is truncated: a segment at byte {pos} runs past the end ({n} bytes)"
        seg = data[pos + 4 : pos + 2 + length]
        problem = None
        if marker == 0xDB:
            problem = _dqt(seg, quant)
        elif marker == 0xC4:
            problem = _dht(seg, huff)
        elif marker in _SOF:
            if comps:
                return "two frame headers"
            sequential = marker in (0xC0, 0xC1)
            problem, comps = _sof(seg, quant)
        elif marker == 0xDA:
            problem = _sos(seg, comps, sequential)
        if problem is not None:
            return f"{problem} (byte {pos})"
        pos += 2 + length
        if marker == 0xDA:  # the image data follows
            break
    if data.find(b"\xff\xd9", pos) < 0:
        return f"file is truncated: no end-of-image marker after the image data ({n} bytes)"
    return None
