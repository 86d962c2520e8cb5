"""A photo uploaded to the page: the request body read within a bound, then checked and decoded
in memory.

The page sends the file as the raw body of a POST (``fetch(url, {method: "POST", body:
file})``), not as a multipart form: Starlette's form parser spools uploads to temporary files,
and nothing of a user's photo may touch this machine's disk. So the body is read here chunk
by chunk into memory, counting: a ``Content-Length`` over :data:`MAX_UPLOAD_BYTES` is refused
before anything is read, and a body that grows past it anyway (a chunked request, or one whose
header lied) is refused as soon as it does (:class:`TooLarge`, answered 413).

The bytes are then judged by their content, never by a file name or a content type a client
chose: Pillow is asked to open them as JPEG, PNG or WebP only (:data:`FORMATS`), and the pixel
count the header declares is checked against
:data:`facegan.projection.MAX_PHOTO_PIXELS` before any pixel is decoded (a few kilobytes of
PNG can declare a 100-megapixel image). :func:`check_photo` does only that (cheap: done before
the server decides whether it has time); :func:`decode_photo` decodes the whole image, which
finds a truncated or damaged file. Every refusal is a :class:`~.params.BadRequest` (400) whose
message names the problem and the fix.
"""

from __future__ import annotations

from PIL import Image
from starlette.requests import Request

from .. import projection
from ..errors import UserError
from .params import BadRequest

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # a phone's JPEG is 2 to 8 MB
FORMATS = ("JPEG", "PNG", "WEBP")  # Pillow's names; only these decoders are ever tried
LABEL = "the uploaded file"


class TooLarge(BadRequest):
    """A body over :data:`MAX_UPLOAD_BYTES` (answered 413)."""


def _too_large(size: str) -> TooLarge:
    return TooLarge(f"the photo is {size}, more than the {MAX_UPLOAD_BYTES // 2**20} MB this server "
                    "takes; send a smaller image (a JPEG of the face is plenty)")


async def read_body(request: Request, limit: int = MAX_UPLOAD_BYTES) -> bytes:
    """The request's body, in memory, at most ``limit`` bytes; :class:`TooLarge` beyond,
    BadRequest for an empty one."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise BadRequest("the request's Content-Length is not a number") from None
        if n > limit:
            raise _too_large(f"{n / 2**20:.0f} MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # counted, whatever the header said
            raise _too_large(f"over {limit / 2**20:.0f} MB")
    if not body:
        raise BadRequest("no photo in the request: send the image file's bytes as the body of the "
                         "POST")
    return bytes(body)


def check_photo(data: bytes) -> tuple[str, tuple[int, int]]:
    """(format, (width, height)) from the header alone; BadRequest for a file that is not a
    JPEG, PNG or WebP image, or has too many pixels."""
    try:
        return projection.sniff_photo(data, LABEL, formats=FORMATS)
    except UserError as e:
        raise BadRequest(str(e)) from None


def decode_photo(data: bytes) -> Image.Image:
    """The whole photo decoded in memory (EXIF rotation applied, RGB); BadRequest for any
    file Pillow cannot decode completely."""
    try:
        return projection.decode_photo(data, LABEL, formats=FORMATS)
    except UserError as e:
        raise BadRequest(str(e)) from None
    except Exception as e:  # a decoder's surprise on a hostile file is still the file's fault
        raise BadRequest(f"{LABEL} could not be decoded ({type(e).__name__}); send a complete "
                         "JPEG, PNG or WebP image") from None
