"""OpenAPI request examples, for the shipped model (mnist-vae, 16 latents).

Real digits from MNIST (a 1, a 7 and a 3, 28 x 28 grey PNGs) and their posterior means
under model/zoo/mnist-vae/1, rounded. tests/app/api/test_openapi.py and
test_latent_space.py send every example to the shipped model and expect a 200.
"""

from __future__ import annotations

from typing import Any

ONE = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAm0lEQVR42mNgGPyg5u9/e1xyCV9+/7WDMJkwJOXZcRvq8ub3ZXkO7HI2T37/jsOl"
    "cfbfv3txyYn8/f3aCYecwtm/v+twacz4/XcHPw65gA+/D4rjMvTv37/zcRk6/ffv3+o45Azu/v69BpfGV79/H+HBJfn39+9IXHLz///9K4/Lxid/v/fg"
    "CHAGh99/76CLMeFLE3DJG8folg4BZ5g7ROhGQMoAAAAASUVORK5CYII="
)
SEVEN = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA50lEQVR42t3SMUuCURTG8ScHhyBRcrCp8U2cnRoilLZoaMvdQcXFqS8QOLg65ChC"
    "NLaIQRGNQUOLJJSVnyCFUOx/sSWK9+U9g6tnupfffbj3XI60MrUW2Nei6YKeMyEn98qX3wDzfgC27kajMe4BgA+/5d8A8Da9/Xfo+vEa+KpkJTXh"
    "JemzgwkMdyVJV9DwB3twn5OkxMnn7+q/jh9vU5KkU3hKGW0fTpmVrD9xULTsbOGcZ1i06yhHwm29iGvHw23jAqpGTmkYWI/ZadHftrADwQ7/7sjE"
    "dH5jBeu8eua85DhabsB+AEy2X3AOEwgXAAAAAElFTkSuQmCC"
)
THREE = (
    "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAABEUlEQVR42s2SsUoDQRiEvw3RaHOiVZoDK5uYQjtRUUEJnD6AYGy0CBb2voOdTbAw"
    "TxAFLRQRwQcQDGhjIxLFQgshKaIwy1nk7tDNYSlOsz87O/8/s7vwjzFW2AqttdYe9btUYfexKStJUs1zyBNJMalpALIJeRHwWjMhU3MpE7O+nwfw"
    "mlI95yj11F1Lw/D8mW559VKSl0qt3XUkXQ/itB1dX4SZEFo7px1HU3yIoxwne5mkMsYYkzHGrARJgLi4nS+ffwCb279c8JAU9LaNUOo937ccud9o"
    "fVN2MXsmH2Ck/C61FxKPADTGqbaBpcmQq+rhT2UjeinZl/0Bd+TEgSTp/mavmBIgV3lTvZL/m+/4BcmYcnlrSR/kAAAAAElFTkSuQmCC"
)
ONE_MEAN = [-2.06, -0.29, 1.48, -0.28, -0.19, -0.27, -1.29, 1.12, 0.28, -0.04, 0.49, -0.38, -0.06, 0.0, 0.84, 0.16]
SEVEN_MEAN = [-0.88, -0.48, -0.48, 1.18, -0.31, -2.03, -0.43, -0.86, -0.45, 0.11, -0.15, -0.59, -0.03, -1.31, -0.1,
              -0.35]  # fmt: skip
THREE_MEAN = [-0.89, -0.69, 1.64, 0.14, -0.28, -0.68, 1.16, -0.32, 0.88, 0.76, -0.62, 0.37, 1.17, 0.56, 0.01, -0.6]

IMAGES: dict[str, Any] = {
    "images": {"summary": "a 3 and a 7 (base64 PNGs)", "value": {"images": [THREE, SEVEN]}},
    "arrays": {
        "summary": "one blank 28 x 28 image as pixel arrays in [0, 1]",
        "value": {"arrays": [[[[0.0] * 28] * 28]]},
    },
}
DECODE: dict[str, Any] = {
    "images": {
        "summary": "the posterior means of a 1 and a 7, as base64 PNGs",
        "value": {"latents": [ONE_MEAN, SEVEN_MEAN]},
    },
    "arrays": {"summary": "the prior's mean, as pixel arrays", "value": {"latents": [[0.0] * 16], "format": "array"}},
}
INTERPOLATE: dict[str, Any] = {
    "images": {"summary": "from a 1 to a 7 (base64 PNGs)", "value": {"images": [ONE, SEVEN]}},
    "latents": {"summary": "between two latents (their posterior means)", "value": {"latents": [ONE_MEAN, SEVEN_MEAN]}},
}
TRAVERSE: dict[str, Any] = {
    "image": {"summary": "around a 3 (a base64 PNG)", "value": {"images": [THREE]}},
    "latent": {"summary": "around a latent (the 3's posterior mean)", "value": {"latents": [THREE_MEAN]}},
    "origin": {"summary": "around the prior's mean", "value": {"latents": [[0.0] * 16]}},
}
