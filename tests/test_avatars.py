"""Uploaded pictures instead of initials: recognised by their bytes (the logo's check), decoded and drawn
anew as a small square WebP by Pillow, shown beside messages to both sides, served only to whoever may see
their owner's messages and with safe headers, and removable."""
from __future__ import annotations

import io
import re
from typing import Any

import pytest
from PIL import Image
from web_support import World, post_form, sign_in

from storage.avatars import AVATAR_SIZE, Avatar
from storage.posting import post_message
from web.avatars import AVATAR_UPLOAD_MAX


def _image(kind: str = "PNG", size: tuple[int, int] = (300, 200), **options: Any) -> bytes:
    picture = Image.new("RGB", size, (36, 87, 214))
    picture.paste((240, 180, 20), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    picture.save(out, kind, **options)
    return out.getvalue()


def _upload(client: Any, data: bytes, name: str = "me.png") -> Any:
    return post_form(client, "/me/avatar", {"avatar": (io.BytesIO(data), name)},
                     content_type="multipart/form-data")


def _picture_url(html: str, user_id: int) -> str | None:
    found = re.search(rf'src="(/avatars/{user_id}\?v=\d+)"', html)
    return found.group(1) if found else None


@pytest.mark.parametrize("kind", ["PNG", "JPEG", "WEBP"])
def test_upload_is_redrawn_as_a_small_square_and_served_safely(app: Any, world: World, kind: str) -> None:
    # PNG, JPEG and WebP are taken, whatever their name says; what is stored is our own square WebP, with
    # none of the upload's bytes (an EXIF block, here) carried over.
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # camera maker: metadata that must not be served again
    data = _image(kind, exif=exif.tobytes()) if kind != "PNG" else _image(kind)
    team = sign_in(app.test_client(), world.team)
    response = _upload(team, data, name="holiday.txt")
    assert response.status_code == 302
    stored = Avatar.get(Avatar.user == world.team.id)
    assert b"SecretCam" not in bytes(stored.data) and stored.content_type == "image/webp"
    with Image.open(io.BytesIO(bytes(stored.data))) as picture:
        assert picture.format == "WEBP" and picture.size == (AVATAR_SIZE, AVATAR_SIZE)
    page = team.get("/me").get_data(as_text=True)
    url = _picture_url(page, world.team.id)
    assert url and "Remove picture" in page
    served = team.get(url)
    assert served.status_code == 200 and served.data == bytes(stored.data) and served.mimetype == "image/webp"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served.headers["Content-Security-Policy"] and "default-src 'none'" in \
        served.headers["Content-Security-Policy"]
    assert served.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert team.get(f"/avatars/{world.team.id}?v=1").headers["Cache-Control"] == "private, no-cache"  # not its URL


@pytest.mark.parametrize("data,sentence", [
    (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "must be a PNG, JPEG or WebP"),
    (b"GIF89a" + b"\x00" * 40, "must be a PNG, JPEG or WebP"),
    (b"\x89PNG\r\n\x1a\n" + b"<script>alert(1)</script>" * 4, "could not be read"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * AVATAR_UPLOAD_MAX, "at most 10 MiB"),
])
def test_what_is_not_a_picture_is_refused_beside_the_field(app: Any, world: World, data: bytes,
                                                            sentence: str) -> None:
    team = sign_in(app.test_client(), world.team)
    response = _upload(team, data)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and sentence in page and 'id="avatar-error"' in page
    assert 'id="time-zone"' in page  # the rest of the page is there too
    assert Avatar.select().count() == 0


def test_too_many_pixels_is_refused_before_decoding(app: Any, world: World) -> None:
    # A tiny file that claims an enormous image (a "decompression bomb") is refused by its header. A PNG
    # decodes whole, so its bound is lower than a JPEG's (which decodes at a reduced scale).
    team = sign_in(app.test_client(), world.team)
    bomb = _image("PNG", size=(5_000, 4_000), optimize=True)
    response = _upload(team, bomb)
    assert response.status_code == 400 and "too many pixels" in response.get_data(as_text=True)


def test_both_sides_see_pictures_beside_messages_and_initials_otherwise(app: Any, world: World) -> None:
    # The team's picture shows to the client in the portal and the client's to the team; a person without
    # one keeps their initials; removing a picture brings the initials back and its URL answers 404.
    post_message(world.thread, world.client, "Hello from Bob")
    team, client = sign_in(app.test_client(), world.team), sign_in(app.test_client(), world.client)
    assert _upload(team, _image()).status_code == 302
    assert _upload(client, _image("JPEG")).status_code == 302
    portal = client.get("/portal/w/acme").get_data(as_text=True)
    team_page = team.get("/w/acme").get_data(as_text=True)
    kim_url, bob_url = _picture_url(portal, world.team.id), _picture_url(team_page, world.client.id)
    assert kim_url and bob_url and _picture_url(team_page, world.team.id) == kim_url
    assert client.get(kim_url).status_code == 200 and team.get(bob_url).status_code == 200
    assert post_form(team, "/me/avatar/remove").status_code == 302
    assert team.get(kim_url).status_code == 404
    portal = client.get("/portal/w/acme").get_data(as_text=True)
    assert _picture_url(portal, world.team.id) is None and ">KL</div>" in portal


def test_pictures_go_only_to_who_may_see_their_owner(app: Any, world: World) -> None:
    # A client's picture is not served to a client of another workspace, nor to anyone signed out; a new
    # picture gets a new URL (so a long cache is safe).
    post_message(world.thread, world.client, "Hello from Bob")
    bob = sign_in(app.test_client(), world.client)
    _upload(bob, _image())
    [first] = [a.updated_at for a in Avatar.select()]
    url = f"/avatars/{world.client.id}?v=1"
    assert sign_in(app.test_client(), world.other).get(url).status_code == 404
    assert app.test_client().get(url).status_code == 302  # to the sign-in page
    assert sign_in(app.test_client(), world.team).get(url).status_code == 200
    carol = sign_in(app.test_client(), world.no_access)
    assert carol.get(url).status_code == 404  # same workspace, but no Messages access
    _upload(bob, _image("WEBP"))
    [second] = [a.updated_at for a in Avatar.select()]
    assert second >= first and Avatar.select().count() == 1


def test_upload_needs_the_csrf_token(app: Any, world: World) -> None:
    team = sign_in(app.test_client(), world.team)
    response = team.post("/me/avatar", data={"avatar": (io.BytesIO(_image()), "me.png")},
                         content_type="multipart/form-data")
    assert response.status_code == 400 and Avatar.select().count() == 0
