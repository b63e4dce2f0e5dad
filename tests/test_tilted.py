"""Coins photographed at an angle, with hard shadows, and bimetallic coins whose inner disc is the
strongest edge: the rim is found as an ellipse, its major axis gives the size, and the coin's crop
is made round again. Generated photos with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BACKGROUND
from PIL import Image, ImageDraw

from coinfeat.core.images.crop import unsquashed
from coinfeat.core.images.detect import Circle, find_coins


def ellipse_points(x, y, a, b, angle_deg, n=180):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    th = np.radians(angle_deg)
    u, v = a * np.cos(t), b * np.sin(t)
    return list(zip(x + u * np.cos(th) - v * np.sin(th), y + u * np.sin(th) + v * np.cos(th)))


def draw_coin(draw, x, y, a, b, angle, colour, rim_darker=60):
    rim = tuple(max(0, c - rim_darker) for c in colour)
    draw.polygon(ellipse_points(x, y, a, b, angle), fill=rim)
    draw.polygon(ellipse_points(x, y, a * 0.93, b * 0.93, angle), fill=colour)


def noisy(img: Image.Image, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(
        np.asarray(img).astype(int) + rng.integers(-6, 6, (img.height, img.width, 3)), 0, 255
    ).astype(np.uint8)


COINS = [(250, 250, 90), (520, 260, 80), (780, 250, 100), (300, 560, 85), (600, 580, 95)]


def test_coins_seen_at_an_angle_are_fitted_as_ellipses_and_sized_by_their_major_axis():
    img = Image.new("RGB", (1000, 800), BACKGROUND)
    draw = ImageDraw.Draw(img)
    ratio, angle = 0.7, 20.0  # a phone held at about 45 degrees
    for i, (x, y, a) in enumerate(COINS):
        draw_coin(draw, x, y, a, a * ratio, angle, [(184, 115, 51), (212, 175, 55), (170, 170, 180)][i % 3])
    found = find_coins(noisy(img)).coins
    assert len(found) == len(COINS)
    for coin in found:
        x, y, a = min(COINS, key=lambda c: np.hypot(c[0] - coin.x, c[1] - coin.y))
        assert np.hypot(coin.x - x, coin.y - y) < 0.05 * a
        assert coin.radius == pytest.approx(a, rel=0.04), "the major axis is the coin's diameter"
        assert coin.tilted and coin.axis_ratio == pytest.approx(ratio, abs=0.05)
        assert min(abs(coin.angle - angle), 180 - abs(coin.angle - angle)) < 6


def test_round_coins_stay_circles():
    img = Image.new("RGB", (1000, 800), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for x, y, a in COINS:
        draw_coin(draw, x, y, a, a, 0, (212, 175, 55))
    found = find_coins(noisy(img)).coins
    assert len(found) == len(COINS) and not any(c.tilted for c in found)
    assert all(c.minor is None for c in found)


def test_a_hard_shadow_is_not_taken_for_the_rim():
    img = Image.new("RGB", (1000, 800), (235, 235, 230))
    draw = ImageDraw.Draw(img)
    for x, y, a in COINS:
        shadow = ellipse_points(x + 0.25 * a, y + 0.2 * a, a, a, 0)
        draw.polygon(shadow, fill=(95, 95, 100))  # a lamp low on one side
    for x, y, a in COINS:
        draw_coin(draw, x, y, a, a, 0, (205, 170, 60), rim_darker=30)
    found = find_coins(noisy(img, 1)).coins
    assert len(found) == len(COINS)
    for coin in found:
        x, y, a = min(COINS, key=lambda c: np.hypot(c[0] - coin.x, c[1] - coin.y))
        assert coin.radius == pytest.approx(a, rel=0.05) and np.hypot(coin.x - x, coin.y - y) < 0.08 * a


def test_a_bimetallic_coin_is_its_outer_rim_even_when_its_inner_disc_is_the_strongest_edge():
    table = (200, 200, 195)
    img = Image.new("RGB", (1000, 800), table)
    draw = ImageDraw.Draw(img)
    for x, y, a in COINS:
        draw.polygon(ellipse_points(x, y, a, a, 0), fill=(168, 160, 140))  # outer ring, near the table
        draw.polygon(ellipse_points(x, y, 0.7 * a, 0.7 * a, 0), fill=(150, 110, 40))  # dark brass core
    found = find_coins(noisy(img, 2)).coins
    assert len(found) == len(COINS)
    for coin in found:
        x, y, a = min(COINS, key=lambda c: np.hypot(c[0] - coin.x, c[1] - coin.y))
        assert coin.radius == pytest.approx(a, rel=0.06), f"found {coin.radius:.0f} for a coin of {a}"


def test_a_tilted_coin_is_cut_out_round_again():
    def face(squash: float, angle: float) -> Image.Image:
        img = Image.new("RGB", (400, 400), BACKGROUND)
        draw = ImageDraw.Draw(img)
        draw.polygon(ellipse_points(200, 200, 120, 120 * squash, angle), fill=(212, 175, 55))
        mark = [(0, -80), (40, -80), (40, 60), (0, 60)]  # an off-centre bar: where it lands matters
        th = np.radians(angle)
        points = []
        for u, v in mark:
            v *= squash
            points.append((200 + u * np.cos(th) - v * np.sin(th), 200 + u * np.sin(th) + v * np.cos(th)))
        draw.polygon(points, fill=(90, 60, 20))
        return img

    tilted, round_ = face(0.6, 35.0), face(1.0, 35.0)
    region, circle = unsquashed(tilted, Circle(200, 200, 120, 72, 35.0))
    assert circle.radius == 120 and not circle.tilted
    size = region.size[0]
    expected = np.asarray(
        round_.crop((200 - size // 2, 200 - size // 2, 200 + size - size // 2, 200 + size - size // 2))
    )
    got = np.asarray(region)
    agree = np.mean(np.abs(got.astype(int) - expected.astype(int)).sum(axis=2) < 60)
    assert agree > 0.95
    unchanged, same = unsquashed(round_, Circle(200, 200, 120))
    assert unchanged is round_ and same.radius == 120
