"""`make_thumbnails`: thumbnails of an uploaded image, kept as artifacts.

Untrusted images are opened with limits: only PNG, JPEG, WebP and GIF are read (no format
whose decoder hands the file to an outside interpreter, as EPS does to Ghostscript),
Pillow refuses anything over JOBS_MAX_IMAGE_PIXELS (a decompression bomb), a truncated file
fails when decoded, and a file that is not such an image fails when opened. Each is a
permanent failure with a clear message.
"""

import io
import warnings
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, field_validator

from service.task_api import (
    PermanentError,
    TaskArgs,
    current,
    report_progress,
    save_artifact,
    task,
    upload_path,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PillowImage

_READS = ("PNG", "JPEG", "WEBP", "GIF")
_SAVE = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


class ThumbnailArgs(TaskArgs):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "upload_id": "5f0c9a4e-3b1d-4c8e-9f2a-7d6b5e4c3a21",
                    "sizes": [[256, 256], [64, 64]],
                    "format": "webp",
                }
            ]
        }
    )

    upload_id: UUID = Field(description="from POST /jobs/uploads")
    sizes: list[tuple[int, int]] = Field(
        default=[(128, 128)],
        min_length=1,
        max_length=10,
        description="bounding boxes [width, height], each 1-4096; aspect ratio is kept",
    )
    format: Literal["png", "jpeg", "webp"] = "png"

    @field_validator("sizes")
    @classmethod
    def _within_bounds(cls, sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for width, height in sizes:
            if not (1 <= width <= 4096 and 1 <= height <= 4096):
                raise ValueError(f"size {width}x{height} is outside 1..4096")
        return sizes


class ImageRejected(PermanentError):
    """The upload is not an image this task will process."""


@task(
    name="make_thumbnails",
    queue="images",
    timeout_s=120,
    max_attempts=2,
    backoff_s=5,
    preload=("PIL.Image",),
)
def make_thumbnails(args: ThumbnailArgs) -> dict[str, Any]:
    """Thumbnails of an uploaded image at each requested size, aspect ratio kept."""
    ctx = current()
    path = upload_path(args.upload_id)
    if not path.is_file():
        raise ImageRejected(f"no upload {args.upload_id} (uploads are kept per client)")
    image = _open(path.read_bytes(), ctx.settings.max_image_pixels)
    pillow_format, content_type = _SAVE[args.format]
    if args.format == "jpeg" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    artifacts = []
    for n, (width, height) in enumerate(args.sizes, start=1):
        thumb = image.copy()
        thumb.thumbnail((width, height))
        out = io.BytesIO()
        thumb.save(out, pillow_format)
        name = f"thumb-{width}x{height}.{args.format}"
        saved = save_artifact(name, out.getvalue(), content_type)
        artifacts.append({**saved, "width": thumb.width, "height": thumb.height})
        report_progress(n / len(args.sizes), f"{name} done")
    return {"source": {"width": image.width, "height": image.height}, "artifacts": artifacts}


def _open(data: bytes, max_pixels: int) -> "PillowImage":
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
        try:
            image = Image.open(io.BytesIO(data), formats=_READS)
            image.load()
        except UnidentifiedImageError:
            raise ImageRejected(
                "the upload is not an image Pillow can read as PNG, JPEG, WebP or GIF"
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRejected(
                f"the image is over {max_pixels} pixels (JOBS_MAX_IMAGE_PIXELS)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageRejected(f"the image is damaged or truncated: {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    return image
