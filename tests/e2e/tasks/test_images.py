"""`make_thumbnails` with real uploads: thumbnails, and images that must be refused."""

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def png(width: int, height: int, mode: str = "RGB", kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height), color=0).save(out, kind)
    return out.getvalue()


def upload(stack: Stack, data: bytes, content_type: str = "image/png") -> str:
    r = stack.http.post("/jobs/uploads", content=data, headers={"content-type": content_type})
    assert r.status_code == 201, r.text
    assert r.json()["size"] == len(data)
    upload_id: str = r.json()["upload_id"]
    return upload_id


def thumbnails(stack: Stack, upload_id: str, **extra: object) -> str:
    r = stack.http.post(
        "/jobs", json={"task": "make_thumbnails", "args": {"upload_id": upload_id, **extra}}
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["id"]
    return job_id


def test_thumbnails_keep_the_aspect_ratio(stack: Stack) -> None:
    stack.worker("w")
    upload_id = upload(stack, png(400, 200))

    job = stack.wait(thumbnails(stack, upload_id, sizes=[[100, 100], [50, 80]]))

    assert job["status"] == "finished", job
    assert job["result"]["source"] == {"width": 400, "height": 200}
    sizes = [(a["width"], a["height"]) for a in job["result"]["artifacts"]]
    assert sizes == [(100, 50), (50, 25)]
    assert job["progress"]["value"] == 1.0
    for info in job["result"]["artifacts"]:
        r = stack.http.get(f"/jobs/{job['id']}/artifacts/{info['name']}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (info["width"], info["height"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"this is not an image at all", "not an image Pillow can read"),
        (png(300, 300)[:-200], "damaged or truncated"),
        (png(10_000, 10_000, mode="1"), "over 40000000 pixels"),
        (png(20, 20, kind="EPS"), "as PNG, JPEG, WebP or GIF"),  # read by Ghostscript
        (png(20, 20, kind="BMP"), "as PNG, JPEG, WebP or GIF"),
    ],
    ids=["not-an-image", "truncated", "decompression-bomb", "eps", "bmp"],
)
def test_bad_images_fail_clearly_and_the_worker_carries_on(
    stack: Stack, data: bytes, message: str
) -> None:
    stack.worker("w")

    job = stack.wait(thumbnails(stack, upload(stack, data)))

    assert job["status"] == "failed" and job["attempt"] == 1  # permanent: not retried
    assert job["error"]["type"] == "ImageRejected"
    assert message in job["error"]["message"]
    assert stack.wait(stack.submit("echo", value="next"))["status"] == "finished"


def test_an_upload_over_the_limit_is_413_and_stores_nothing(
    make_stack: Callable[..., Stack], tmp_path: Path
) -> None:
    files = tmp_path / "files"
    stack = make_stack(JOBS_MAX_UPLOAD_BYTES="65536", JOBS_ARTIFACTS_DIR=str(files))

    r = stack.http.post("/jobs/uploads", content=b"x" * 70_000)

    assert r.status_code == 413
    assert r.json() == {"detail": "request body too large: over 65536 bytes"}
    assert not any(p.is_file() for p in files.rglob("*"))
    assert upload(stack, b"y" * 60_000)  # under the limit is fine


def test_another_clients_upload_is_out_of_reach(stack: Stack, sql_engine: object) -> None:
    from tests.support import make_key

    stack.worker("w")
    upload_id = upload(stack, png(20, 20))
    stack.http.headers["Authorization"] = f"Bearer {make_key(sql_engine, 'intruder')}"  # type: ignore[arg-type]

    job = stack.wait(thumbnails(stack, upload_id))

    assert job["status"] == "failed"
    assert f"no upload {upload_id}" in job["error"]["message"]
