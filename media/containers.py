"""What a file's container states, made safe before PyAV (FFmpeg) opens it (audio.decode_av).

FFmpeg trusts some sizes a file states before any decode limit applies:
- RIFF (WAV, RF64, RIFX, AVI) and IFF (AIFF) chunks: what a LIST/INFO entry states is allocated and
  zero-filled before it is read, so a 100-byte file could take a gigabyte. A chunk that states more
  than the file holds is cut to the end of the file. The samples are not: a streamed file's 'data'
  chunk states more than it holds, and FFmpeg reads what there is.
- ID3v2 tags (at the start of any file, in a WAV's or AIFF's id3 chunk, between the frames of an ADTS
  AAC stream, among an ASF/WMA header's metadata): a compressed frame is inflated into a buffer of the
  size the frame states, up to 32768 times its own, so a 400 KB MP3 could take 1.6 GB. The pack uses no
  tag: each such v2.3/v2.4 tag is marked as a version FFmpeg does not parse, and FFmpeg skips its bytes
  whole (the audio is unchanged).
- QuickTime/MP4 compressed movie headers ('cmov'): inflated into a buffer of the size they state, and again
  for one nested in the inflated header, so a 300 KB M4A could take 300 MB. Modern files have none: each
  is renamed 'free', which FFmpeg skips (such a file then has no header to decode).

`fixes` lists the bytes to change; audio.decode_av opens a copy of the file with them changed.
"""

import struct

from .limits import DecodeError

# Chunks walked at most (a real file has a handful; a crafted one could have millions).
MAX_CHUNKS = 1000
# The IFF forms FFmpeg reads chunk by chunk, and the byte order of their sizes.
_FORMS = {b"RIFF": "<I", b"RF64": "<I", b"BW64": "<I", b"RIFX": ">I", b"FORM": ">I"}
# The chunks (or lists) holding the samples: FFmpeg reads them only up to the end of the file.
_SAMPLES = (b"data", b"movi", b"SSND")
_ID3_CHUNKS = (b"id3 ", b"ID3 ")
# An ID3v2 version FFmpeg skips whole (it parses 2, 3 and 4).
SKIPPED_ID3_VERSION = 5
# The start of an ASF (WMA) file: its header object's id, then the object's size.
_ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# The atom types a QuickTime/MP4 file starts with (as FFmpeg's probe looks for them).
_MOV_ATOMS = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"junk", b"uuid", b"styp")


def fixes(reader) -> tuple:
    """([(offset, new bytes)], what is wrong with the file or "") for a reader (read(offset, count), size)."""
    patches = []
    start = _id3_tags(reader, 0, patches)
    head, asf = reader.read(start, 2), reader.read(0, 24)
    if len(head) == 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS AAC: tags between its frames
        for position in _find_all(reader, b"ID3", start, reader.size):
            _id3_tags(reader, position, patches)
    elif asf[:16] == _ASF_HEADER:  # a tag among the metadata of the header object
        for position in _find_all(reader, b"ID3", 16, struct.unpack("<Q", asf[16:24])[0]):
            _id3_tags(reader, position, patches)
    if reader.read(4, 4) in _MOV_ATOMS:
        for position in _find_all(reader, b"cmov", 0, reader.size):
            atoms = reader.read(position + 8, 16)  # 'dcom' saying zlib, then the 'cmvd' atom (FFmpeg's reading)
            if atoms[:8] == b"dcomzlib" and atoms[12:] == b"cmvd":
                patches.append((position, b"free"))
    wrong = ""
    for offset, tag, stated, left, order in _chunks(reader):
        if tag in _ID3_CHUNKS:
            _id3_tags(reader, offset + 8, patches)
        if stated > left:
            patches.append((offset + 4, struct.pack(order, left)))
            wrong = wrong or (f"its {tag.decode('latin-1')!r} chunk claims {stated:,} bytes but only {left:,} "
                              "follow it (a damaged or crafted file)")
    return patches, wrong


def _chunks(reader):
    """(offset, tag, stated size, bytes after its header, byte order) of every chunk of an IFF file that is not
    samples (lists walked into); nothing for other files. Raises limits.DecodeError past MAX_CHUNKS."""
    head = reader.read(0, 12)
    order = _FORMS.get(head[:4]) if len(head) == 12 else None
    if order is None:
        return
    position, ends, ds64 = 12, [reader.size], None
    for _ in range(MAX_CHUNKS):
        if position + 8 > ends[-1]:
            return
        header = reader.read(position, 28)
        tag, length = header[:4], struct.unpack(order, header[4:8])[0]
        body, left = position + 8, reader.size - position - 8
        kind = header[8:12] if tag in (b"LIST", b"RIFF") and length >= 4 else b""
        if tag == b"ds64" and len(header) == 28:
            ds64 = struct.unpack("<Q", header[16:24])[0]  # RF64: the data chunk's real size
        if tag == b"data" and length == 0xFFFFFFFF and ds64 is not None:
            length = ds64
        samples = tag in _SAMPLES or kind in _SAMPLES
        if samples and (length == 0 or length > left):
            return  # the samples run to the end of the file (FFmpeg looks for nothing after them)
        if not samples:
            yield position, tag, length, left, order
            length = min(length, left)
        if kind and not samples:  # a list: its chunks follow its type
            ends.append(body + length)
            position = body + 4
        else:
            position = body + length + (length & 1)
        while len(ends) > 1 and position + 8 > ends[-1]:  # past the end of a list: on in its parent
            position = ends.pop()
            position += position & 1
    raise DecodeError(f"the file has more than {MAX_CHUNKS} chunks besides its samples (a damaged or "
                             "crafted file)")


def _id3_tags(reader, position: int, patches: list) -> int:
    """Mark the ID3v2 tags that follow one another from `position` as skipped; the position after them."""
    for _ in range(MAX_CHUNKS):
        header = reader.read(position, 10)
        # What FFmpeg takes for a tag (ff_id3v2_match): "ID3", a version and revision that are not 0xff, a size.
        if (len(header) < 10 or header[:3] != b"ID3" or 0xFF in header[3:5]
                or any(byte & 0x80 for byte in header[6:10])):
            return position
        size = (header[6] << 21) | (header[7] << 14) | (header[8] << 7) | header[9]
        footer = header[3] == 4 and header[5] & 0x10
        if header[3] in (3, 4):
            patches.append((position + 3, bytes([SKIPPED_ID3_VERSION])))
            grown = size + 10
            if footer and grown < 1 << 28:  # FFmpeg adds a footer only to tags it parses: fold it into the size
                patches.append((position + 5, bytes([header[5] & ~0x10 & 0xFF,
                                                     grown >> 21 & 0x7F, grown >> 14 & 0x7F, grown >> 7 & 0x7F,
                                                     grown & 0x7F])))
        position += 10 + size + (10 if footer else 0)
    return position


def _find_all(reader, needle: bytes, start: int, end: int):
    """Every offset of `needle` in the file from `start` to `end`, read block by block."""
    block = 1 << 20
    end = min(end, reader.size)
    for position in range(start, end, block):
        data = reader.read(position, min(block, end - position) + len(needle) - 1)
        found = data.find(needle)
        while found != -1 and position + found < end and found < block:
            yield position + found
            found = data.find(needle, found + 1)
