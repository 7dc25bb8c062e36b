"""Build ``pose_landmarker_full.task`` from the Apache-2.0 BlazePose models in the mediapipe 0.10.21 wheel.

mediapipe 1.2.x ships no pose model; its ``PoseLandmarker`` needs a ``.task`` bundle whose two TFLite
models carry input-normalization metadata. The 0.10.21 wheel holds the same networks without that
metadata (the legacy ``solutions`` graph normalized inputs itself). This script:

1. takes the wheel (``--wheel``) or downloads it with ``pip download mediapipe==0.10.21 --no-deps``;
2. extracts ``mediapipe/modules/pose_detection/pose_detection.tflite`` and
   ``mediapipe/modules/pose_landmark/pose_landmark_full.tflite``;
3. adds image-input metadata with mediapipe's own metadata writer: detector mean 127.5, std 127.5
   (pixels to [-1, 1]); landmarks mean 0, std 255 (pixels to [0, 1]);
4. bundles them as ``pose_detector.tflite`` and ``pose_landmarks_detector.tflite`` into the .task (an
   aligned zip, as mediapipe's ``create_model_asset_bundle`` writes it), and writes ``ORIGIN.txt`` with
   the sources' and the result's SHA-256.

Run: ``.venv/bin/python tools/build_pose_landmarker.py [--wheel PATH]``.

``--variant heavy`` builds ``pose_landmarker_heavy.task`` into the project cache instead (``make`` runs it once):
the heavy landmark network (``pose_landmark_heavy.tflite``, Apache-2.0, 27.7 MB) from the npm package
``@mediapipe/pose@0.5.1675469404`` (``npm pack``, or ``--npm-tgz PATH``), with the same metadata as the full one
(mean 0, std 255), beside the person detector of the shipped full bundle. The detect stage uses it for the crops
of several people (``[detect] crop_model``).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from mocap_studio.reconstruction.detect2d import ASSET_PATH

ASSETS_DIR = ASSET_PATH.parent
WHEEL_VERSION = "0.10.21"
# bundle member -> (path in the wheel, normalization mean, std)
MEMBERS = {
    "pose_detector.tflite": ("mediapipe/modules/pose_detection/pose_detection.tflite", 127.5, 127.5),
    "pose_landmarks_detector.tflite": (
        "mediapipe/modules/pose_landmark/pose_landmark_full.tflite", 0.0, 255.0
    ),
}
TASK_NAME = "pose_landmarker_full.task"


def download_wheel(folder: Path) -> Path:
    """Download the mediapipe wheel (manylinux x86_64, Python 3.11) into ``folder`` with pip; returns its path."""
    cmd = [sys.executable, "-m", "pip", "download", f"mediapipe=={WHEEL_VERSION}", "--no-deps",
           "--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
           "-d", str(folder)]
    subprocess.run(cmd, check=True)
    wheels = sorted(folder.glob(f"mediapipe-{WHEEL_VERSION}-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"pip download left no mediapipe {WHEEL_VERSION} wheel in {folder}")
    return wheels[0]


def with_metadata(model: bytes, name: str, mean: float, std: float,
                  description: str = "BlazePose GHUM 3D (MediaPipe), Apache-2.0") -> bytes:
    """The TFLite model with a TFLITE_METADATA buffer describing an RGB image input normalized as
    ``(pixel - mean) / std``.

    mediapipe 1.2.x keeps the flatbuffer schemas (pure Python) but dropped the compiled helper that its
    ``MetadataWriter`` calls, so the metadata is assembled here with the schemas' object API.
    """
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as md
    from mediapipe.tasks.metadata import schema_py_generated as tfl

    tflite = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(model, 0))
    if len(tflite.subgraphs) != 1 or len(tflite.subgraphs[0].inputs) != 1:
        raise ValueError(f"{name}: expected one subgraph with one image input")
    image = md.TensorMetadataT(name="image", description="RGB image")
    image.content = md.ContentT()
    image.content.contentPropertiesType = md.ContentProperties.ImageProperties
    image.content.contentProperties = md.ImagePropertiesT()
    image.content.contentProperties.colorSpace = md.ColorSpaceType.RGB
    norm = md.ProcessUnitT()
    norm.optionsType = md.ProcessUnitOptions.NormalizationOptions
    norm.options = md.NormalizationOptionsT()
    norm.options.mean, norm.options.std = [mean], [std]
    image.processUnits = [norm]
    image.stats = md.StatsT()
    image.stats.max, image.stats.min = [(255.0 - mean) / std], [(0.0 - mean) / std]
    outputs = [md.TensorMetadataT(name=f"output_{i}") for i in range(len(tflite.subgraphs[0].outputs))]
    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata, subgraph.outputTensorMetadata = [image], outputs
    meta = md.ModelMetadataT()
    meta.name, meta.description = name, description
    meta.subgraphMetadata = [subgraph]
    meta.minParserVersion = "1.0.0"  # normalization and image properties date from the first schema
    builder = flatbuffers.Builder(0)
    builder.Finish(meta.Pack(builder), b"M001")
    meta_bytes = bytes(builder.Output())

    buffer = tfl.BufferT()
    buffer.data = np.frombuffer(meta_bytes, dtype=np.uint8)
    tflite.buffers.append(buffer)
    entry = tfl.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(tflite.buffers) - 1
    tflite.metadata = [m for m in (tflite.metadata or []) if m.name != "TFLITE_METADATA"] + [entry]
    builder = flatbuffers.Builder(len(model) + len(meta_bytes) + 1024)
    builder.Finish(tflite.Pack(builder), b"TFL3")
    return bytes(builder.Output())


def write_bundle(models: dict[str, bytes], task: Path) -> Path:
    """Write the .task bundle ``task`` holding ``models`` (member name -> TFLite bytes) atomically, as mediapipe's
    create_model_asset_bundle does (members aligned for memory mapping), with a fixed time stamp so that the same
    inputs give the same bytes; returns ``task``."""
    from mediapipe.tasks.python.metadata.metadata_writers.model_asset_bundle_utils import (
        AlignZipFile,
    )

    task.parent.mkdir(parents=True, exist_ok=True)
    tmp = task.with_name(task.name + ".tmp")
    with AlignZipFile(str(tmp), mode="w", alignment=4) as zf:
        for name, content in models.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    tmp.replace(task)
    return task


def build(wheel: Path, out_dir: Path) -> Path:
    """Build the .task bundle from ``wheel`` into ``out_dir`` with ORIGIN.txt and the licence; returns the .task path."""

    models: dict[str, bytes] = {}
    lines = [f"Built by tools/build_pose_landmarker.py from {wheel.name}",
             f"(PyPI: mediapipe=={WHEEL_VERSION}, wheel SHA-256 {sha256(wheel.read_bytes())}).",
             "Licence: Apache License 2.0 (the mediapipe wheel's LICENSE, copied beside this file).",
             "Models: BlazePose GHUM 3D, 'full' variant (Google, model card: https://developers.google.com/"
             "mediapipe/solutions/vision/pose_landmarker).", "", "Members:"]
    with zipfile.ZipFile(wheel) as zf:
        licence = zf.read(f"mediapipe-{WHEEL_VERSION}.dist-info/LICENSE")
        for member, (source, mean, std) in MEMBERS.items():
            raw = zf.read(source)
            models[member] = with_metadata(raw, member.removesuffix(".tflite"), mean, std)
            lines.append(f"  {member} <- {source} (SHA-256 {sha256(raw)}),")
            lines.append(f"    input normalization mean {mean} std {std}")
    task = write_bundle(models, out_dir / TASK_NAME)
    lines += ["", f"{TASK_NAME} SHA-256 {sha256(task.read_bytes())}, {task.stat().st_size} bytes"]
    (out_dir / "ORIGIN.txt").write_text("\n".join(lines) + "\n")
    (out_dir / "LICENSE-mediapipe.txt").write_bytes(licence)
    return task


NPM_PACKAGE = "@mediapipe/pose@0.5.1675469404"
HEAVY_MEMBER = "package/pose_landmark_heavy.tflite"


def npm_pack(folder: Path) -> Path:
    """``npm pack`` the MediaPipe pose package into ``folder``; returns the tarball's path."""
    subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], check=True, cwd=folder, stdout=subprocess.DEVNULL)
    tarballs = sorted(folder.glob("mediapipe-pose-*.tgz"))
    if not tarballs:
        raise FileNotFoundError(f"npm pack {NPM_PACKAGE} left no tarball in {folder}")
    return tarballs[0]


def build_heavy(tgz: Path, out_dir: Path, full_task: Path = ASSET_PATH) -> Path:
    """Build the heavy bundle from the npm tarball ``tgz`` and the detector of ``full_task`` into ``out_dir``
    (written atomically, with ORIGIN-heavy.txt); returns the .task path."""
    import tarfile

    from mocap_studio.reconstruction.detect2d import HEAVY_TASK_NAME

    with tarfile.open(tgz) as tf:
        member = tf.extractfile(HEAVY_MEMBER)
        if member is None:
            raise FileNotFoundError(f"{tgz}: no {HEAVY_MEMBER}")
        raw = member.read()
    with zipfile.ZipFile(full_task) as zf:
        detector = zf.read("pose_detector.tflite")
    models = {"pose_detector.tflite": detector,
              "pose_landmarks_detector.tflite": with_metadata(raw, "pose_landmarks_detector", 0.0, 255.0)}
    task = write_bundle(models, out_dir / HEAVY_TASK_NAME)
    (out_dir / "ORIGIN-heavy.txt").write_text("\n".join([
        f"Built by tools/build_pose_landmarker.py --variant heavy from {tgz.name} (npm: {NPM_PACKAGE},",
        f"tarball SHA-256 {sha256(tgz.read_bytes())}); licence: Apache License 2.0 (the package's).",
        f"  pose_landmarks_detector.tflite <- {HEAVY_MEMBER} (SHA-256 {sha256(raw)}), mean 0.0 std 255.0",
        f"  pose_detector.tflite <- {full_task.name} (the shipped full bundle's detector)",
        f"{HEAVY_TASK_NAME} SHA-256 {sha256(task.read_bytes())}, {task.stat().st_size} bytes", ""]))
    return task


HAND_MEMBERS = {
    "hand_detector.tflite": "mediapipe/modules/palm_detection/palm_detection_full.tflite",
    "hand_landmarks_detector.tflite": "mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
}
"""The hand landmarker's members: both read pixels scaled to [0, 1] (mean 0, std 255), as MediaPipe's hand
graphs feed them."""


def build_hand(wheel: Path, out_dir: Path) -> Path:
    """Build the hand landmarker's bundle (palm detector and hand landmarks, 'full' variants) from ``wheel`` into
    ``out_dir`` (written atomically, with ORIGIN-hand.txt); returns the .task path."""
    from mocap_studio.reconstruction.hands import HAND_TASK_NAME

    models: dict[str, bytes] = {}
    lines = [f"Built by tools/build_pose_landmarker.py --variant hand from {wheel.name}",
             f"(PyPI: mediapipe=={WHEEL_VERSION}, wheel SHA-256 {sha256(wheel.read_bytes())}); licence: Apache "
             "License 2.0 (the wheel's).", "Models: MediaPipe Hands, 'full' variants (palm detection, hand landmarks)."]
    with zipfile.ZipFile(wheel) as zf:
        for member, source in HAND_MEMBERS.items():
            raw = zf.read(source)
            models[member] = with_metadata(raw, member.removesuffix(".tflite"), 0.0, 255.0,
                                           "MediaPipe Hands (palm detection, hand landmarks), Apache-2.0")
            lines.append(f"  {member} <- {source} (SHA-256 {sha256(raw)}), mean 0.0 std 255.0")
    task = write_bundle(models, out_dir / HAND_TASK_NAME)
    lines.append(f"{HAND_TASK_NAME} SHA-256 {sha256(task.read_bytes())}, {task.stat().st_size} bytes")
    (out_dir / "ORIGIN-hand.txt").write_text("\n".join(lines) + "\n")
    return task


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Command line: build the pose landmarker bundle (see the module docstring); returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"mediapipe {WHEEL_VERSION} wheel (downloaded if omitted)")
    parser.add_argument("--out", type=Path, help="output folder (default: the package's assets for full, the "
                        "project cache's pose_models/ for heavy and hand)")
    parser.add_argument("--variant", choices=("full", "heavy", "hand"), default="full")
    parser.add_argument("--npm-tgz", type=Path, help=f"the {NPM_PACKAGE} tarball (npm pack if omitted; heavy only)")
    parser.add_argument("--if-missing", action="store_true", help="do nothing when the bundle already exists")
    args = parser.parse_args(argv)
    if args.variant in ("heavy", "hand"):  # built into the project cache
        if args.variant == "heavy":
            from mocap_studio.reconstruction.detect2d import heavy_model_path as cached_path
        else:
            from mocap_studio.reconstruction.hands import hand_model_path as cached_path
        out = args.out or cached_path().parent
        if args.if_missing and (out / cached_path().name).exists():
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            task = (build_heavy(args.npm_tgz or npm_pack(Path(tmp)), out) if args.variant == "heavy"
                    else build_hand(args.wheel or download_wheel(Path(tmp)), out))
        print(f"wrote {task} ({task.stat().st_size / 1e6:.1f} MB)")
        return 0
    args.out = args.out or ASSETS_DIR
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        task = build(wheel, args.out)
    print(f"wrote {task} ({task.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
