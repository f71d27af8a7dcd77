"""Face analysis: every face in a photo with 478 dense landmarks (mediapipe face mesh, iris included).

Backends sit behind the `FaceBackend` protocol; the default one ships its models inside the mediapipe
wheel, so nothing is downloaded at run time. `to_ibug68` maps the 478 points to the 68-point
iBUG/300W layout that 68-point tools (and the diffusion engine's structure image) expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

import cv2
import numpy as np

from engine.errors import (
    FaceTooSmallError,
    NoFaceError,
    ProfileFaceError,
    Role,
    RotatedFaceError,
    TooDarkError,
)
from engine.native_stderr import quiet_native_stderr

N_LANDMARKS = 478

# Mesh indices used across the engine ("right" = the subject's right = the left of the image).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
RIGHT_CHEEK_EDGE, LEFT_CHEEK_EDGE = 234, 454
MOUTH_UPPER, MOUTH_LOWER = 13, 14  # middle of the inner lips
# Eyes and lips as rings of mesh points: where a real face always shows some texture.
FEATURE_RINGS: tuple[tuple[int, ...], ...] = (
    (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
    (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
    (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146),
)

# iBUG/300W 68-point layout from mesh indices: jaw 0-16 (image left to right), brows 17-26,
# nose bridge 27-30, nostrils 31-35, eyes 36-47 (outer corner first, clockwise), lips 48-67.
IBUG68_FROM_MESH: tuple[int, ...] = (
    *(127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356),
    *(70, 63, 105, 66, 107),
    *(336, 296, 334, 293, 300),
    *(168, 197, 5, 4),
    *(98, 97, 2, 326, 327),
    *(33, 160, 158, 133, 153, 144),
    *(362, 385, 387, 263, 373, 380),
    *(61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91),
    *(78, 81, 13, 311, 308, 402, 14, 178),
)

# A face must span at least this many pixels between the outer eye corners to be made up reliably.
MIN_INTER_OCULAR_PX = 16.0
# Beyond this head turn (degrees) one cheek is hidden and the makeup would be placed wrongly.
MAX_YAW_DEG = 50.0
# Beyond this in-plane tilt (degrees) the photo is sideways (or upside down).
MAX_ROLL_DEG = 45.0
# Median 8-bit luma at the landmarks below which a face is too dark to make up (the shared photos'
# darkest face has 71; a photo scaled to 7 % brightness has 10-13).
MIN_FACE_LUMA = 20.0
# An eye or the lips whose box varies less than this (luma standard deviation, 8-bit levels) show
# nothing: a blank, e.g. transparent, area the mesh guessed a face onto. Real ones: 15 and more.
MIN_FEATURE_TEXTURE = 2.0
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601, as cv2's RGB2GRAY


@dataclass(frozen=True)
class Face:
    """One face. `landmarks` are the 478 mesh points in the image's pixel coordinates (x, y)."""

    landmarks: np.ndarray  # (478, 2) float32
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of the landmarks, in pixels
    yaw_deg: float  # head turn left/right; 0 = frontal
    inter_ocular: float  # pixels between the outer eye corners
    # What the photo shows of the face, measured by the backend (faces built from landmarks alone
    # keep these defaults): median 8-bit luma at the landmarks, whether its eyes and lips show any
    # texture, and whether it is an upside-down face the mesh took for an upright one.
    luma: float | None = None
    features_visible: bool = True
    upside_down: bool = False

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0) * (y1 - y0)

    @property
    def roll_deg(self) -> float:
        """In-plane tilt: 0 with the eyes straight above the mouth, about ±90 on its side."""
        eyes = (self.landmarks[RIGHT_EYE_OUTER] + self.landmarks[LEFT_EYE_OUTER]) / 2
        mouth = (self.landmarks[MOUTH_UPPER] + self.landmarks[MOUTH_LOWER]) / 2
        dx, dy = eyes - mouth
        return math.degrees(math.atan2(float(dx), float(-dy)))


class FaceBackend(Protocol):
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face found in an HxWx3 uint8 RGB image, largest first; may be empty."""
        ...


def make_face(landmarks: np.ndarray, yaw_deg: float) -> Face:
    pts = np.asarray(landmarks, dtype=np.float32)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    iod = float(np.linalg.norm(pts[RIGHT_EYE_OUTER] - pts[LEFT_EYE_OUTER]))
    return Face(pts, (int(x0), int(y0), int(x1), int(y1)), yaw_deg, iod)


def to_ibug68(face: Face) -> np.ndarray:
    """The face's landmarks in the 68-point iBUG/300W order, (68, 2) float32."""
    return face.landmarks[list(IBUG68_FROM_MESH)]


class MediapipeBackend:
    """The face mesh, with its own short-range detector, runs once on a downscaled copy: that finds
    the faces of selfies and group photos alike. When the photo was shrunk for it (small faces may be
    lost there), or when it finds nothing, the full-range detector searches too (a padded copy for a
    face filling a tight crop, tiles for a face a few percent of a 12-megapixel frame) and the mesh
    runs on each new face's crop."""

    MESH_SIZE = 512  # longest side of the copy the mesh sees
    DETECT_SIZE = 640  # longest side of the copy (or tile) the full-range detector sees
    MAX_FACES = 12  # every face of a group selfie gets made up; the cap bounds the work per photo
    CROP_SCALE = 2.2  # crop side relative to the detector's box: the mesh wants some context
    ORIENTATION_CROP_SCALE = 2.0  # crop side relative to the landmarks' box, for the orientation check
    ORIENTATION_SIZE = 128  # the short-range detector's own input size

    def __init__(self, working_size: int = 192) -> None:
        from mediapipe.python.solutions import face_detection, face_mesh

        self._crop_size = working_size
        with quiet_native_stderr():
            self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
            self._mesh_all = face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=self.MAX_FACES,
                refine_landmarks=True,
                min_detection_confidence=0.5,
            )
            self._mesh_one = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.4
            )
            self._orientation = face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.05)
            # The graphs open their models on their own threads, which log as they do: one run each
            # waits for that inside the quiet window.
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in (self._detector, self._mesh_all, self._mesh_one, self._orientation):
                graph.process(blank)
        # The mesh logs one more notice the first time it places landmarks on a face.
        self._quiet_until_a_face = True

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if not self._quiet_until_a_face:
            return self._detect(rgb)
        with quiet_native_stderr():
            faces = self._detect(rgb)
        self._quiet_until_a_face = not faces
        return faces

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        faces = self._mesh(self._mesh_all, rgb, (0, 0, w, h), self.MESH_SIZE)
        if not faces or max(h, w) > self.MESH_SIZE:
            for box in self._detect_boxes(rgb):
                if any(_covers(face, box) for face in faces):
                    continue
                for face in self._mesh(self._mesh_one, rgb, box, self._crop_size):
                    if not any(_overlaps(face, other) for other in faces):
                        faces.append(face)
        return sorted((self._inspected(rgb, face) for face in faces), key=lambda f: f.area, reverse=True)

    def _inspected(self, rgb: np.ndarray, face: Face) -> Face:
        """The face with what the photo shows of it measured (see `Face`); the orientation check,
        the costly one, only for a face that could otherwise be made up."""
        face = replace(face, luma=landmark_luma(rgb, face), features_visible=features_visible(rgb, face))
        if face.inter_ocular >= MIN_INTER_OCULAR_PX and abs(face.yaw_deg) <= MAX_YAW_DEG:
            face = replace(
                face, upside_down=abs(face.roll_deg) <= MAX_ROLL_DEG and self._upside_down(rgb, face)
            )
        return face

    def _upside_down(self, rgb: np.ndarray, face: Face) -> bool:
        """Whether the face reads better turned over. The mesh fits an upright face onto an upside-down
        one (its lip points on the brows), so its landmarks cannot tell. The short-range detector can:
        shown the face's crop above the same crop turned 180 degrees, in one run, it scores the upright
        one higher (by 0.07 or more, both ways round, on every shared photo)."""
        crop = square_crop(rgb, face.bbox, self.ORIENTATION_CROP_SCALE, self.ORIENTATION_SIZE)
        result = self._orientation.process(np.vstack([crop, crop[::-1, ::-1]]))
        scores = [0.0, 0.0]  # best score in the top half (as taken) and the bottom half (turned)
        for detection in result.detections or []:
            box = detection.location_data.relative_bounding_box
            half = int(box.ymin + box.height / 2 >= 0.5)
            scores[half] = max(scores[half], detection.score[0])
        return scores[1] > scores[0]

    def _mesh(self, mesh: Any, rgb: np.ndarray, box: tuple[int, int, int, int], size: int) -> list[Face]:
        """Faces the mesh finds in `box` of the photo, seen at most `size` pixels wide."""
        x0, y0, x1, y1 = box
        if x1 <= x0 or y1 <= y0:
            return []
        result = mesh.process(shrink(rgb[y0:y1, x0:x1], size))
        faces = []
        for landmarks in result.multi_face_landmarks or []:
            # Normalised coordinates: relative to the box, whatever size the mesh saw it at.
            xyz = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float32)
            xyz *= np.array([x1 - x0, y1 - y0, x1 - x0], dtype=np.float32)
            faces.append(make_face(xyz[:, :2] + np.array([x0, y0], np.float32), _yaw_deg(xyz)))
        return faces

    def _detect_boxes(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Square crop boxes (x0, y0, x1, y1) in full-resolution pixels, one per detected face."""
        h, w = rgb.shape[:2]
        boxes = self._detect_in(rgb, 0, 0, w, h)
        if not boxes:
            boxes = self._detect_padded(rgb)
        tile = 2 * self.DETECT_SIZE
        if not boxes and max(h, w) > tile:
            step = tile * 3 // 4
            for y0 in range(0, max(h - tile, 0) + step, step):
                for x0 in range(0, max(w - tile, 0) + step, step):
                    boxes += self._detect_in(rgb, x0, y0, min(w, x0 + tile), min(h, y0 + tile))
        return boxes

    def _detect_padded(self, rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
        """A face filling a tight crop can be too big for the full-range detector: show it at half
        the detector's size on a grey border. The photo is shrunk before it is padded, so the copy
        never exceeds DETECT_SIZE whatever the photo's shape (padded at full size, a 20000-pixel
        strip took gigabytes)."""
        h, w = rgb.shape[:2]
        small = shrink(rgb, self.DETECT_SIZE // 2)
        sh, sw = small.shape[:2]
        pad = max(sh, sw) // 2
        padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        sx, sy = w / sw, h / sh  # full-resolution pixels per pixel of the small copy
        return [
            (
                max(0, round((x0 - pad) * sx)),
                max(0, round((y0 - pad) * sy)),
                min(w, round((x1 - pad) * sx)),
                min(h, round((y1 - pad) * sy)),
            )
            for x0, y0, x1, y1 in self._detect_in(padded, 0, 0, sw + 2 * pad, sh + 2 * pad)
        ]

    def _detect_in(
        self, rgb: np.ndarray, x0: int, y0: int, x1: int, y1: int
    ) -> list[tuple[int, int, int, int]]:
        h, w = rgb.shape[:2]
        result = self._detector.process(shrink(rgb[y0:y1, x0:x1], self.DETECT_SIZE))
        boxes = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            bw, bh = rel.width * (x1 - x0), rel.height * (y1 - y0)
            cx, cy = x0 + rel.xmin * (x1 - x0) + bw / 2, y0 + rel.ymin * (y1 - y0) + bh / 2
            half = self.CROP_SCALE * max(bw, bh) / 2
            box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
            boxes.append((max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])))
        return boxes


def shrink(rgb: np.ndarray, size: int) -> np.ndarray:
    """A contiguous copy at most `size` pixels on its longest side (the image itself if it fits).

    Big reductions go bilinear to twice the size first (it reads only 4 pixels per output, so a
    12-megapixel photo takes a millisecond), then area-averaged to the size (no aliasing). Both steps
    map pixel centres alike, so coordinates scale by the size ratio exactly.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(rgb)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if scale < 0.5:
        rgb = cv2.resize(rgb, (2 * target[0], 2 * target[1]), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)


def square_crop(rgb: np.ndarray, box: tuple[int, int, int, int], scale: float, size: int) -> np.ndarray:
    """A size x size copy of the square `scale` times the box's longer side around its centre
    (clipped to the photo), shrunk in the two steps of `shrink`."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    half = scale * max(x1 - x0, y1 - y0) / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # At least one pixel, even for landmarks the mesh extrapolated past the frame.
    left, top = min(max(0, int(cx - half)), w - 1), min(max(0, int(cy - half)), h - 1)
    right, bottom = min(w, max(left + 1, int(cx + half))), min(h, max(top + 1, int(cy + half)))
    region = shrink(rgb[top:bottom, left:right], 2 * size)
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def landmark_luma(rgb: np.ndarray, face: Face) -> float:
    """Median 8-bit luma of the photo at the face's landmarks: how much light is on the face."""
    h, w = rgb.shape[:2]
    xs = np.clip(np.rint(face.landmarks[:, 0]).astype(np.intp), 0, w - 1)
    ys = np.clip(np.rint(face.landmarks[:, 1]).astype(np.intp), 0, h - 1)
    return float(np.median(rgb[ys, xs].astype(np.float32) @ LUMA_WEIGHTS))


def features_visible(rgb: np.ndarray, face: Face) -> bool:
    """Whether both eyes and the lips show texture in the photo: on a blank area (a transparent face
    composited on white) the mesh can still guess a face from the head around it."""
    h, w = rgb.shape[:2]
    for ring in FEATURE_RINGS:
        points = face.landmarks[list(ring)]
        x0, y0 = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
        box = rgb[y0 : min(y1, h), x0 : min(x1, w)]
        if box.size == 0:
            return False
        gray = cv2.cvtColor(np.ascontiguousarray(box), cv2.COLOR_RGB2GRAY)
        if cv2.meanStdDev(gray)[1][0, 0] < MIN_FEATURE_TEXTURE:
            return False
    return True


def _covers(face: Face, box: tuple[int, int, int, int]) -> bool:
    """Whether the centre of a detector box lies on an already found face."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0, y0, x1, y1 = face.bbox
    return x0 <= cx <= x1 and y0 <= cy <= y1


def _yaw_deg(xyz: np.ndarray) -> float:
    """Head turn from the depth of the two cheek edges (mesh z shares the x scale)."""
    d = xyz[LEFT_CHEEK_EDGE] - xyz[RIGHT_CHEEK_EDGE]
    return math.degrees(math.atan2(float(d[2]), float(d[0])))


def _overlaps(a: Face, b: Face) -> bool:
    ax0, ay0, ax1, ay1 = a.bbox
    bx0, by0, bx1, by1 = b.bbox
    iw = max(0, min(ax1, bx1) - max(ax0, bx0))
    ih = max(0, min(ay1, by1) - max(ay0, by0))
    return iw * ih > 0.5 * min(a.area, b.area)


def usable_faces(faces: list[Face], role: Role) -> list[Face]:
    """The faces to make up (selfie: all usable ones; reference: the largest), or a typed error
    saying what is wrong with which photo."""
    photo = "selfie" if role == "selfie" else "reference photo"
    no_face = NoFaceError(
        f"I couldn't find a face in your {photo}. Please send a clear, well-lit photo.", role
    )
    if not faces:
        raise no_face
    candidates = faces if role == "selfie" else faces[:1]
    lit = [f for f in candidates if f.luma is None or f.luma >= MIN_FACE_LUMA]
    if not lit:
        subject = "Your selfie" if role == "selfie" else "The reference photo"
        raise TooDarkError(
            f"{subject} is too dark: I can hardly see the face. Please send one taken in better light.", role
        )
    # Before the blank-feature check: on an upside-down face the mesh's eye and lip rings may lie on
    # bare skin, and "turn it upright" is the useful answer.
    upright = [f for f in lit if abs(f.roll_deg) <= MAX_ROLL_DEG and not f.upside_down]
    if not upright:
        raise RotatedFaceError(
            f"The face in your {photo} is upside down or on its side. "
            "Please turn the photo upright and send it again.",
            role,
        )
    visible = [f for f in upright if f.features_visible]
    if not visible:
        raise no_face
    big = [f for f in visible if f.inter_ocular >= MIN_INTER_OCULAR_PX]
    if not big:
        raise FaceTooSmallError(
            f"The face in your {photo} is too small. Please send a closer photo of the face.", role
        )
    frontal = [f for f in big if abs(f.yaw_deg) <= MAX_YAW_DEG]
    if not frontal:
        raise ProfileFaceError(
            f"The face in your {photo} is turned too far to the side. Please send a photo facing the camera.",
            role,
        )
    return frontal
