"""Face analysis: every face in a photo with 478 dense landmarks (mediapipe face mesh, iris included).

Backends sit behind the `FaceBackend` protocol; the default one ships its models inside the mediapipe
wheel, so nothing is downloaded at run time. `to_ibug68` maps the 478 points to the 68-point
iBUG/300W layout that 68-point tools (and the diffusion engine's structure image) expect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from engine.errors import FaceTooSmallError, NoFaceError, ProfileFaceError, Role
from engine.native_stderr import quiet_native_stderr

N_LANDMARKS = 478

# Mesh indices used across the engine ("right" = the subject's right = the left of the image).
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263
RIGHT_IRIS_CENTER, LEFT_IRIS_CENTER = 468, 473
RIGHT_CHEEK_EDGE, LEFT_CHEEK_EDGE = 234, 454

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


@dataclass(frozen=True)
class Face:
    """One face. `landmarks` are the 478 mesh points in the image's pixel coordinates (x, y)."""

    landmarks: np.ndarray  # (478, 2) float32
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of the landmarks, in pixels
    yaw_deg: float  # head turn left/right; 0 = frontal
    inter_ocular: float  # pixels between the outer eye corners

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.bbox
        return (x1 - x0) * (y1 - y0)


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
            # The graphs open their models on their own threads, which log as they do: one run each
            # waits for that inside the quiet window.
            blank = np.zeros((64, 64, 3), np.uint8)
            for graph in (self._detector, self._mesh_all, self._mesh_one):
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
        return sorted(faces, key=lambda f: f.area, reverse=True)

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
    if not faces:
        raise NoFaceError(
            f"I couldn't find a face in your {photo}. Please send a clear, well-lit photo.", role
        )
    candidates = faces if role == "selfie" else faces[:1]
    big = [f for f in candidates if f.inter_ocular >= MIN_INTER_OCULAR_PX]
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
